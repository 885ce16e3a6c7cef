"""The OpenAI-compatible server (`python -m server`). Not built yet: see the README's roadmap."""
