"""Training prompts for the trainers: ArithWorld, a local JSON Lines file, or a Hugging Face dataset.

Every task becomes the two columns the trainers read: `prompt` (the question) and `solution` (the
gold answer, as the grader compares it).
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset

from rsim_graph.errors import InputError
from rsim_graph.grading import extract_boxed
from rsim_graph.tasks.arith import PRESETS, arith_world


def arith_dataset(n: int, seed: int = 0, task: str = "arith") -> Dataset:
    """`n` problems from the training split of ArithWorld task `task` (its seeds never overlap the held-out ones)."""
    problems = arith_world(task, split="train", seed=seed).problems(n)
    return Dataset.from_list([{"prompt": p.question, "solution": p.answer} for p in problems])


def load_task(task: str, *, n: int, seed: int = 0, split: str = "train", question_field: str = "question", answer_field: str = "answer") -> Dataset:
    """The `prompt`/`solution` dataset for `task`: an ArithWorld task (`arith`, `arith-easy`), a `.jsonl` file, or a hub dataset id.

    A gold answer written as a full solution (MATH's `solution` field) is reduced to its `\\boxed{}` content.
    """
    if task in PRESETS:
        return arith_dataset(n, seed, task)
    if task.endswith((".jsonl", ".json")):
        if not Path(task).is_file():
            raise InputError(f"data file {task} does not exist; pass an existing JSON Lines file or --task arith")
        ds = load_dataset("json", data_files=task, split="train")
    else:
        ds = load_dataset(task, split=split)
    missing = [f for f in (question_field, answer_field) if f not in ds.column_names]
    if missing:
        raise InputError(
            f"{task} has no field {missing[0]!r} (fields: {', '.join(ds.column_names)}); "
            "map them with --question_field and --answer_field"
        )

    def to_columns(row):
        gold = str(row[answer_field])
        return {"prompt": row[question_field], "solution": extract_boxed(gold) or gold.split("####")[-1].strip()}

    ds = ds.map(to_columns, remove_columns=ds.column_names)
    return ds.select(range(min(n, len(ds)))) if n > 0 else ds
