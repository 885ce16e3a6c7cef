"""The one task registry: every task name that training and evals accept becomes a list of `Problem`s here.

    load_task("arith")                                                # ArithWorld's held-out problems (generated)
    load_task("gsm8k", data_file="../shared/data/gsm8k_test.jsonl")   # a benchmark from a local copy, its own fields
    load_task("gsm8k", split="train")                                 # the same benchmark from the hub (openai/gsm8k, main)
    load_task("mine.jsonl")                                           # a custom file: load_task("custom", data_file="mine.jsonl")
    load_task("DigitalLearningGmbH/MATH-lighteval", question_field="problem", answer_field="solution")  # any hub dataset

Every gold answer, whatever its source, goes through `gold_answer` (`rsim_graph/tasks/benchmarks.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rsim_graph.errors import InputError
from rsim_graph.tasks.arith import PRESETS, arith_world
from rsim_graph.tasks.base import Problem
from rsim_graph.tasks.benchmarks import ANSWER_TYPES, TASKS, AnswerType, to_problem

TASK_NAMES = (*PRESETS, *TASKS, "custom")
ARITH_LIMIT = 500  # ArithWorld problems when no limit (or 0) is given: a generated task has no end


def load_task(
    task: str,
    *,
    split: str | None = None,
    data_file: str | Path | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    answer_type: AnswerType | None = None,
    dataset_config: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Problem]:
    """The first `limit` problems of `task`.

    Args:
        task (`str`):
            an ArithWorld task (`arith`, `arith-easy`), a benchmark of `TASKS` (`gsm8k`, `math500`, ...), `custom`
            (with `data_file`), a `.jsonl`/`.json` path (a custom file), or a Hugging Face dataset id (`owner/name`).
        split (`str`, *optional*):
            ArithWorld's `train` or `test` (default `test`); a benchmark's hub split (default: the benchmark's own);
            a hub dataset's split (default `train`). A data file has no splits.
        data_file (`str` or `Path`, *optional*):
            a local JSON Lines file, read instead of the hub; a benchmark keeps its fields and answer type.
        question_field, answer_field (`str`, *optional*):
            the row fields of the question and the gold answer (default: the benchmark's own, else `question`, `answer`).
        answer_type (`AnswerType`, *optional*):
            how answers are graded (default: the benchmark's own, else `auto`).
        dataset_config (`str`, *optional*):
            the hub dataset's config (default: the benchmark's own, such as GSM8K's `main`; else none).
        limit (`int`, *optional*):
            the first `limit` problems (default: all; 500 for ArithWorld, whose problems never run out).
        seed (`int`, *optional*, defaults to `0`):
            which problems ArithWorld generates.
    """
    if task in PRESETS:
        if data_file is not None:
            raise InputError(f"--data_file does not apply to {task} (a generated task); use --task custom or a benchmark name")
        return arith_world(task, split=split or "test", seed=seed).problems(limit or ARITH_LIMIT)
    if task.endswith((".jsonl", ".json")):
        if data_file is not None:
            raise InputError(f"the task {task} is a data file and --data_file is another; pass one of them")
        task, data_file = "custom", task
    if task == "custom" and data_file is None:
        raise InputError("--task custom needs --data_file (a JSON Lines file with a question and an answer per row)")
    spec = TASKS.get(task)
    if spec is None and task != "custom" and "/" not in task:
        raise InputError(f"unknown task {task!r}; choose from {', '.join(TASK_NAMES)}, a .jsonl file, or a hub dataset id (owner/name)")
    kind = answer_type or (spec.answer_type if spec else "auto")
    if kind not in ANSWER_TYPES:
        raise InputError(f"answer type {kind!r} is unknown; pass --answer_type {', '.join(ANSWER_TYPES)}")
    qf = question_field or (spec.question_field if spec else "question")
    af = answer_field or (spec.answer_field if spec else "answer")
    if data_file is not None:
        rows = read_file(data_file)
    elif spec is not None:
        rows = read_hub(spec.hf_id, dataset_config or spec.hf_config, split or spec.split, limit)
    else:
        rows = read_hub(task, dataset_config, split or "train", limit)
    if limit is not None:
        rows = rows[:limit]
    if rows:
        missing = [f for f in (qf, af) if f not in rows[0]]
        if missing:
            raise InputError(
                f"the rows have no field {missing[0]!r} (fields: {', '.join(rows[0])}); map them with --question_field and --answer_field"
            )
    return [to_problem(row, qf, af, kind, i) for i, row in enumerate(rows)]


def read_file(data_file: str | Path) -> list[dict]:
    """The rows of a JSON Lines file (or of a `.json` file holding one list of rows)."""
    path = Path(data_file).expanduser()
    if not path.is_file():
        raise InputError(f"data file {path} does not exist; pass an existing JSON Lines file")
    text = path.read_text()
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); a list of objects is expected") from e
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{i} is not valid JSON ({e.msg}); one JSON object per line is expected") from e
    return rows


def read_hub(dataset_id: str, config: str | None, split: str, limit: int | None) -> list[dict]:
    """The rows of a Hugging Face dataset (the first `limit` of them)."""
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, config, split=split)
    except Exception as e:  # noqa: BLE001 - not found, offline (httpx errors are no OSError), no such config or split: one line and the way out
        where = f"{dataset_id} ({'config ' + config + ', ' if config else ''}split {split})"
        raise InputError(
            f"cannot load {where}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}; check the id, config and split, "
            "or pass a local copy with --data_file"
        ) from e
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return list(ds)
