"""The paper's benchmarks, and any JSON Lines file, as lists of `Problem`s.

Each benchmark is read through `datasets` by its usual Hugging Face id, with its own field names.
A local copy (for example `../shared/data/gsm8k_test.jsonl`) is read with `data_file=`, keeping the
benchmark's field names and answer format unless they are overridden.

Answer types decide how a prediction is graded (`Problem.grade_output`):
- `numeric` and `latex`: the runtime's math-verify grader on the `\\boxed{}` answer;
- `choice`: the option letter (MMLU-Pro);
- `code`: pass@1, the task's tests run in a sandboxed subprocess (`rsim_graph.code_exec`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rsim_graph.errors import InputError
from rsim_graph.grading import extract_boxed
from rsim_graph.tasks.base import Problem

logger = logging.getLogger(__name__)

AnswerType = Literal["numeric", "latex", "choice", "code"]
ANSWER_TYPES = ("numeric", "latex", "choice", "code")
LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class TaskSpec:
    """Where a benchmark lives and how its rows read.

    Args:
        hf_id, hf_config, split: what `datasets.load_dataset` is given.
        question_field, answer_field: the row fields holding the question and the gold answer.
        answer_type (`AnswerType`): how predictions are graded.
    """

    hf_id: str
    split: str
    question_field: str
    answer_field: str
    answer_type: AnswerType
    hf_config: str | None = None


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec("openai/gsm8k", "test", "question", "answer", "numeric", hf_config="main"),
    "math500": TaskSpec("HuggingFaceH4/MATH-500", "test", "problem", "answer", "latex"),
    "aime24": TaskSpec("HuggingFaceH4/aime_2024", "train", "problem", "answer", "numeric"),
    "mmlu_pro": TaskSpec("TIGER-Lab/MMLU-Pro", "test", "question", "answer", "choice"),
    "theoremqa": TaskSpec("TIGER-Lab/TheoremQA", "test", "Question", "Answer", "latex"),
    "humaneval": TaskSpec("openai/openai_humaneval", "test", "prompt", "canonical_solution", "code"),
    "codealpaca": TaskSpec("sahil2801/CodeAlpaca-20k", "train", "instruction", "output", "code"),
}


def gold_answer(raw: object, answer_type: AnswerType) -> str:
    """The gold answer as the grader compares it: GSM8K's `#### N`, a solution's last `\\boxed{}`, or the field itself.

    >>> gold_answer("She makes 9 * 2 = $18.\\n#### 18", "numeric"), gold_answer("so $\\\\boxed{\\\\frac12}$", "latex")
    ('18', '\\\\frac12')
    """
    text = str(raw).strip()
    if answer_type == "code":
        return text
    if "####" in text:
        return text.split("####")[-1].strip().replace(",", "")
    return extract_boxed(text) or text


def read_rows(task: str, data_file: str | Path | None, spec: TaskSpec | None) -> list[dict]:
    if data_file is not None:
        path = Path(data_file).expanduser()
        if not path.is_file():
            raise InputError(f"data file {path} does not exist; pass an existing JSON Lines file")
        rows = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{i} is not valid JSON ({e.msg}); one JSON object per line is expected") from e
        return rows
    if spec is None:
        raise InputError(f"unknown task {task!r}; choose arith, {', '.join(TASKS)}, or pass --data_file")
    from datasets import load_dataset

    try:
        ds = load_dataset(spec.hf_id, spec.hf_config, split=spec.split)
    except Exception as e:
        raise InputError(
            f"cannot load {spec.hf_id} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); without access to the "
            f"Hugging Face hub, pass a local copy with --data_file"
        ) from e
    return list(ds)


def load_problems(
    task: str,
    *,
    data_file: str | Path | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    answer_type: AnswerType | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """The first `limit` problems of a benchmark or of a JSON Lines file.

    A custom file (`task="custom"`) needs `answer_type`; its field names default to `question` and `answer`.
    """
    spec = TASKS.get(task)
    qf = question_field or (spec.question_field if spec else "question")
    af = answer_field or (spec.answer_field if spec else "answer")
    kind = answer_type or (spec.answer_type if spec else None)
    if kind not in ANSWER_TYPES:
        raise InputError(f"answer type {kind!r} is unknown; pass --answer_type numeric, latex, choice or code")
    rows = read_rows(task, data_file, spec)
    if limit is not None:
        rows = rows[:limit]
    if rows:
        missing = [f for f in (qf, af) if f not in rows[0]]
        if missing:
            raise InputError(
                f"the rows have no field {missing[0]!r} (fields: {', '.join(rows[0])}); "
                "map them with --question_field and --answer_field"
            )
    return [to_problem(row, qf, af, kind, i) for i, row in enumerate(rows)]


def to_problem(row: dict, question_field: str, answer_field: str, kind: AnswerType, index: int) -> Problem:
    """One row as a `Problem`. A row missing its fields becomes a problem with `meta["error"]`, which
    the evaluation records as an error instead of stopping."""
    if row.get(question_field) in (None, "") or row.get(answer_field) is None:
        return Problem("", "", {"index": index, "error": f"row {index} has no {question_field!r} or {answer_field!r}"}, kind)
    question = str(row[question_field])
    meta: dict = {"index": index, "id": row.get("id", row.get("task_id", index))}
    if kind == "choice":
        options = row.get("options") or row.get("choices") or []
        question += "".join(f"\n({LETTERS[i]}) {o}" for i, o in enumerate(options[: len(LETTERS)]))
        gold = str(row[answer_field]).strip()
        if gold.isdigit() and options:  # an index, not a letter
            gold = LETTERS[int(gold)]
        return Problem(question, gold, meta, kind)
    if kind == "code":
        meta.update(test=row.get("test"), entry_point=row.get("entry_point"), prompt=row.get("prompt"))
        if row.get("input"):  # CodeAlpaca's optional input
            question += f"\nInput: {row['input']}"
    return Problem(question, gold_answer(row[answer_field], kind), meta, kind)
