"""The grader accepts every gold answer of the real test sets, written in `\\boxed{}` and in each
dataset's own format, read through the task registry that training and the evaluation share. Skips without ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsim_graph.scoring.grading import extract_answer, math_equal
from rsim_graph.tasks.registry import load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")

# task -> (file, expected rows, the field whose text is the dataset's own way of writing the answer)
SETS = {
    "gsm8k": ("gsm8k_test.jsonl", 1319, "answer"),  # "... #### 18"
    "math500": ("math500_test.jsonl", 500, "solution"),  # a worked solution ending in \boxed{...}
    "aime24": ("aime24_test.jsonl", 30, "answer"),  # the bare integer
}


@pytest.mark.parametrize("task", list(SETS))
def test_grader_accepts_every_gold_answer(task):
    file, expected, own_field = SETS[task]
    rows = [json.loads(line) for line in (DATA / file).read_text().splitlines() if line.strip()]
    problems = load_task(task, data_file=DATA / file)
    assert len(problems) == len(rows) == expected
    rejected = []
    for row, p in zip(rows, problems, strict=True):
        for text in (f"The answer is $\\boxed{{{p.answer}}}$.", str(row[own_field])):
            answer = extract_answer(text) or text.strip()
            if not p.grade_output(answer, text):
                rejected.append((p.answer, text[-80:]))
            # math-verify alone too: the exact-match shortcut in `grade` must not be what accepts them.
            if not math_equal(p.answer, answer):
                rejected.append((p.answer, f"math-verify: {answer[:60]}"))
    assert rejected == [], f"{len(rejected)} gold answers rejected, e.g. {rejected[:5]}"


def test_gold_answers_are_not_trivially_accepted():
    # The same grader rejects a wrong answer for each set (the test above could not pass by accepting anything).
    for task, (file, _, _) in SETS.items():
        p = load_task(task, data_file=DATA / file, limit=1)[0]
        assert not p.grade_output("123456789", "\\boxed{123456789}"), task


def test_training_reads_the_same_gold_answers_as_the_evaluation():
    # `--task gsm8k --data_file gsm8k_train.jsonl` in the trainers: the registry's rows, as `prompt`/`solution` columns.
    from trainers.common import TaskArguments
    from trainers.data import task_dataset

    file = DATA / "gsm8k_train.jsonl"
    if not file.is_file():
        pytest.skip(f"{file} is absent")
    data = task_dataset(TaskArguments(task="gsm8k", data_file=str(file)))
    problems = load_task("gsm8k", data_file=file)
    assert len(data) == len(problems) == 7473
    assert data["solution"] == [p.answer for p in problems] and data["prompt"] == [p.question for p in problems]
    assert not any("####" in s or "," in s for s in data["solution"])  # GSM8K's `#### 1,234` reduced to 1234
