"""OpenAI-compatible server for rSIM: `python -m server`, or `create_app(settings)` to embed it."""
