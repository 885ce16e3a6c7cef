"""Training prompts for the trainers: any task of the registry (`rsim_graph.tasks.registry.load_task`) as the
two columns the trainers read, `prompt` (the question) and `solution` (the gold answer, as the grader compares it).

The registry is the evals' own, so a task trains and evaluates on gold answers normalised the same way.
"""

from __future__ import annotations

import logging

from datasets import Dataset

from rsim_graph.tasks.base import Problem
from rsim_graph.tasks.registry import load_task
from trainers.common import TaskArguments

logger = logging.getLogger(__name__)


def to_dataset(problems: list[Problem]) -> Dataset:
    """The `prompt`/`solution` columns of `problems`; rows the registry marked as broken (no question or answer) are left out."""
    kept = [p for p in problems if not p.meta.get("error")]
    if len(kept) < len(problems):
        logger.warning("left out %d of %d rows without a question or an answer", len(problems) - len(kept), len(problems))
    return Dataset.from_list([{"prompt": p.question, "solution": p.answer} for p in kept])


def task_dataset(args: TaskArguments, *, n: int = 0, seed: int = 0) -> Dataset:
    """The first `n` training problems (0: all of them) of the task that `args` names."""
    return to_dataset(
        load_task(
            args.task, split=args.dataset_split, data_file=args.data_file, question_field=args.question_field,
            answer_field=args.answer_field, dataset_config=args.dataset_config, limit=n or None, seed=seed,
        )
    )


def arith_dataset(n: int, seed: int = 0, task: str = "arith") -> Dataset:
    """`n` problems from the training split of ArithWorld task `task` (its seeds never overlap the held-out ones)."""
    return to_dataset(load_task(task, split="train", limit=n, seed=seed))
