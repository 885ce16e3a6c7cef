"""The paper's benchmarks: where each lives, how its rows read, and the one gold-answer normaliser.

Each benchmark is read through `datasets` by its usual Hugging Face id, with its own field names, or
from a local copy (for example `../shared/data/gsm8k_test.jsonl`) keeping those field names and its
answer format. `rsim_graph.tasks.registry.load_task` is the loader; this module only describes rows.

Answer types decide how a prediction is graded (`Problem.grade_output`):
- `numeric`, `latex` and `auto` (custom files and other hub datasets): the runtime's math-verify
  grader on the `\\boxed{}` answer;
- `choice`: the option letter (MMLU-Pro);
- `code`: pass@1, the task's tests run in a sandboxed subprocess (`rsim_graph.scoring.code_exec`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rsim_graph.scoring.grading import extract_boxed
from rsim_graph.tasks.base import Problem

logger = logging.getLogger(__name__)

AnswerType = Literal["numeric", "latex", "auto", "choice", "code"]  # how a prediction is graded (module docstring)
ANSWER_TYPES = ("numeric", "latex", "auto", "choice", "code")
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

    The one normaliser of gold answers: training and evals both read them through `load_task`, which calls this.

    >>> gold_answer("She makes 9 * 2 = $18.\\n#### 18", "numeric"), gold_answer("so $\\\\boxed{\\\\frac12}$", "latex")
    ('18', '\\\\frac12')
    >>> gold_answer("1,000 + 6 = 1006\\n#### 1,006", "auto"), gold_answer(42, "auto")
    ('1006', '42')
    """
    text = str(raw).strip()
    if answer_type == "code":
        return text
    if "####" in text:
        return text.split("####")[-1].strip().replace(",", "")
    return extract_boxed(text) or text


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
