"""Evaluation and benchmarks: `python -m evals.bench rollout`."""
