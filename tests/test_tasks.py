"""The task registry (`rsim_graph.tasks.registry.load_task`): every kind of task name, offline (the hub is faked)."""

from __future__ import annotations

import json

import datasets
import pytest

from rsim_graph.errors import InputError
from rsim_graph.tasks.arith import arith_world
from rsim_graph.tasks.registry import load_task


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def hub(monkeypatch):
    """A fake `datasets.load_dataset`: records its calls and serves `hub.rows`."""

    class Hub:
        calls: list = []
        rows = [{"question": f"q{i}", "answer": f"{i} + 1000 = {i + 1000}\n#### {i + 1000:,}"} for i in range(5)]

        def load_dataset(self, path, name=None, *, split):
            self.calls.append((path, name, split))
            return datasets.Dataset.from_list(self.rows)

    fake = Hub()
    monkeypatch.setattr(datasets, "load_dataset", fake.load_dataset)
    return fake


def test_arith_presets_are_generated_by_split_and_seed():
    problems = load_task("arith")
    assert len(problems) == 500 and problems[0].question == arith_world("arith").problem(0).question
    train = load_task("arith-easy", split="train", limit=3, seed=2)
    assert [p.question for p in train] == [p.question for p in arith_world("arith-easy", split="train", seed=2).problems(3)]
    with pytest.raises(InputError, match="--data_file does not apply to arith"):
        load_task("arith", data_file="x.jsonl")


def test_a_jsonl_path_is_a_custom_task_with_auto_grading(tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [{"question": "2+3?", "answer": "so \\boxed{5}"}, {"question": "x?", "answer": "#### 1,200"}])
    problems = load_task(str(f))
    assert [(p.question, p.answer, p.kind) for p in problems] == [("2+3?", "5", "auto"), ("x?", "1200", "auto")]
    assert [(p.question, p.answer) for p in load_task("custom", data_file=f)] == [(p.question, p.answer) for p in problems]
    assert problems[1].grade_output("1200.0", "") and not problems[1].grade_output("12", "")  # math-verify, not string equality
    listed = tmp_path / "mine.json"
    listed.write_text(json.dumps([{"q": "1+1?", "a": 2}]))
    assert [(p.question, p.answer) for p in load_task(str(listed), question_field="q", answer_field="a")] == [("1+1?", "2")]


@pytest.mark.parametrize(
    ("task", "kwargs", "words"),
    [
        ("custom", {}, "--task custom needs --data_file"),
        ("gsm8", {}, "unknown task 'gsm8'; choose from arith, arith-easy, gsm8k"),
        ("custom", {"data_file": "/nonexistent.jsonl"}, "data file /nonexistent.jsonl does not exist"),
        ("a.jsonl", {"data_file": "b.jsonl"}, "is a data file and --data_file is another"),
        ("gsm8k", {"answer_type": "fuzzy"}, "answer type 'fuzzy' is unknown"),
    ],
)
def test_bad_tasks_say_what_to_pass(task, kwargs, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(")) as e:
        load_task(task, **kwargs)
    assert "\n" not in str(e.value)


def test_a_benchmark_reads_its_hub_id_config_and_split(hub):
    problems = load_task("gsm8k", limit=2)
    assert hub.calls == [("openai/gsm8k", "main", "test")]  # the benchmark's own config and split
    assert [(p.question, p.answer, p.kind) for p in problems] == [("q0", "1000", "numeric"), ("q1", "1001", "numeric")]
    load_task("gsm8k", split="train", dataset_config="socratic")
    assert hub.calls[-1] == ("openai/gsm8k", "socratic", "train")


def test_any_other_id_is_a_hub_dataset_graded_auto(hub):
    problems = load_task("someone/arith-set", dataset_config="v2", limit=3)
    assert hub.calls == [("someone/arith-set", "v2", "train")] and len(problems) == 3
    assert {p.kind for p in problems} == {"auto"} and problems[2].answer == "1002"
    with pytest.raises(InputError, match="the rows have no field 'problem'"):
        load_task("someone/arith-set", question_field="problem")


def test_a_hub_dataset_that_cannot_load_asks_for_a_local_copy(monkeypatch):
    def missing(path, name=None, *, split):
        raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub\nor cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(InputError, match=r"cannot load someone/gone \(split train\): FileNotFoundError: .*local copy with --data_file") as e:
        load_task("someone/gone")
    assert "\n" not in str(e.value)
