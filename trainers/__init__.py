"""Training entry points: `python -m trainers.pretrain_tiny` (the bundled tiny models)."""
