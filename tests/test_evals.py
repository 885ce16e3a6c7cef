"""python -m evals: the default comparison, custom data files, resume, bad input, choice and code grading."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import OpenAIHandler, ScriptedReasoner

from evals.__main__ import main
from rsim_graph import loading
from rsim_graph.scoring.code_exec import run_program
from rsim_graph.config import RuntimeConfig
from rsim_graph.errors import CheckpointError
from rsim_graph.evaluation.runner import evaluate, read_done
from rsim_graph.loading import BUNDLED_PLANNER
from rsim_graph.evaluation.methods import PS_PLUS_PROMPT, ZERO_COT_PROMPT, resolve
from rsim_graph.tasks.registry import load_task

needs_bundled = pytest.mark.skipif(not (BUNDLED_PLANNER / "planner.json").is_file(), reason="bundled models not built")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
@needs_bundled
def test_default_comparison_writes_tables_records_and_plots(tmp_path, capsys):
    assert main(["--limit", "16", "--output_dir", str(tmp_path), "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "| Model | Planner | arith | #Strategy |" in out and "± " in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["tasks"]["arith"]
    assert list(rows) == ["zero-cot", "ps+", "random-planner", "rsim"]
    for r in rows.values():
        assert r["n"] == 16 and r["errors"] == 0 and set(r) >= {"accuracy", "mean_strategies", "mean_tokens"}
    assert rows["zero-cot"]["mean_strategies"] == 0 and rows["random-planner"]["mean_strategies"] > 2
    record = json.loads((tmp_path / "records" / "arith__rsim.jsonl").read_text().splitlines()[0])
    assert set(record) >= {"question", "gold", "prediction", "correct", "strategies", "trace", "tokens", "seconds"}
    assert (tmp_path / "accuracy_vs_strategies.png").stat().st_size > 1000 and (tmp_path / "strategy_usage.png").is_file()


def test_resume_skips_recorded_problems(tmp_path, library):
    problems = load_task("custom", data_file=write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": "42"} for i in range(6)]), answer_type="numeric")
    path = tmp_path / "rec.jsonl"
    reasoner = ScriptedReasoner(answer="42")
    summary, _ = evaluate("none", problems, reasoner, library, records_path=path)
    assert summary.n == 6 and summary.accuracy == 1.0 and len(reasoner.requests) == 6
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4]) + '\n{"index": 4, "quest')  # killed while writing problem 4
    reasoner.requests.clear()
    summary, records = evaluate("none", problems, reasoner, library, records_path=path)
    assert len(reasoner.requests) == 2 and summary.n == 6 and [r["index"] for r in records] == list(range(6))
    assert sorted(read_done(path)) == list(range(6))  # the torn line was cut, not glued to the next record
    reasoner.requests.clear()
    evaluate("none", problems, reasoner, library, RuntimeConfig(max_step_tokens=64), records_path=path)
    assert len(reasoner.requests) == 6  # other budgets: nothing recorded matches, every problem is run again


def test_custom_fields_and_a_bad_row(tmp_path, library):
    f = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "2+3?", "target": 5}, {"prompt": "", "target": 1}, {"prompt": "1+1?", "target": "2"}])
    problems = load_task("custom", data_file=f, question_field="prompt", answer_field="target", answer_type="numeric")
    summary, records = evaluate("zero-cot", problems, ScriptedReasoner(answer="5"), library)
    assert [r["correct"] for r in records] == [True, False, False]
    assert summary.errors == 1 and "has no 'prompt'" in records[1]["error"]


def test_benchmark_formats_from_local_files(tmp_path):
    gsm = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "2 * 3 = <<2*3=6>>6\n#### 1,006"}])
    assert load_task("gsm8k", data_file=gsm)[0].answer == "1006"
    mmlu = write_jsonl(tmp_path / "m.jsonl", [{"question": "Pick", "options": ["x", "y", "z"], "answer": "C", "answer_index": 2}])
    p = load_task("mmlu_pro", data_file=mmlu)[0]
    assert p.question == "Pick\n(A) x\n(B) y\n(C) z" and p.grade_output("(C)", "") and not p.grade_output("B", "")
    assert p.grade_output(None, "z fits, so the answer is (C).") and not p.grade_output(None, "no idea")


def test_code_is_graded_by_running_the_tests(tmp_path):
    row = {"task_id": "t/0", "prompt": "def add(a, b):\n", "canonical_solution": "    return a + b\n", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"}
    p = load_task("humaneval", data_file=write_jsonl(tmp_path / "h.jsonl", [row]))[0]
    assert p.grade_output(None, "```python\ndef add(a, b):\n    return a + b\n```")
    assert p.grade_output(None, "    return a + b\n")  # a body completing the prompt
    assert not p.grade_output(None, "```python\ndef add(a, b):\n    return a - b\n```")
    assert not p.grade_output(None, "no code at all")


def test_sandbox_limits():
    assert run_program("print('ok')") == (True, "")
    assert run_program("assert 1 == 2")[1] == "AssertionError"
    assert run_program("while True: pass", timeout_s=1) == (False, "timed out after 1 s")
    assert run_program("x = bytearray(8 * 2**30)", memory_mb=512)[1] == "MemoryError"
    assert "network access is disabled" in run_program("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')")[1]


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # killed; a zombie waits only for its reaper


def test_sandbox_timeout_kills_the_programs_children(tmp_path):
    """A program that starts a grandchild and hangs: the whole process group is killed at the time limit."""
    pid_file = tmp_path / "grandchild.pid"
    source = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    ok, why = run_program(source, timeout_s=3)
    assert (ok, why) == (False, "timed out after 3 s")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not process_gone(pid) and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.05)
    assert process_gone(pid), f"the sandbox's grandchild {pid} outlived the timeout"


def test_methods_by_prompt_style():
    assert resolve("zero-cot", prompt_style="instruct").system_prompt == ZERO_COT_PROMPT
    assert resolve("zero-cot").system_prompt is None and resolve("zero-cot").planner is None
    assert resolve("ps+", prompt_style="instruct") == resolve("ps+", prompt_style="instruct") and resolve("ps+", prompt_style="instruct").system_prompt == PS_PLUS_PROMPT
    assert resolve("ps+").planner == "ps+" and resolve("none").planner == "scripted:"
    assert resolve("prompt-planner:gpt-x").planner == "prompt:gpt-x" and resolve("rsim:/tmp/p").planner == "/tmp/p"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--task", "gsm8k", "--data_file", "/nonexistent.jsonl"], "does not exist"),
        (["--task", "nope"], "unknown task 'nope'"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--task", "custom"], "--task custom needs --data_file"),
        (["--data_file", "{f}"], "no field 'question'"),  # a data file alone is a custom task with the default fields
        (["--task", "custom", "--data_file", "{f}", "--answer_type", "numeric", "--question_field", "q"], "no field 'q'"),
        (["--task", "arith", "--data_file", "{f}"], "--data_file does not apply to arith"),
        (["--task", "math500", "--data_file", "{bad}"], "is not valid JSON"),
        (["--reasoner_base_url", "http://127.0.0.1:9/v1", "--reasoner_model", "m"], "cannot reach the reasoner"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, words):
    f = write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "1+1?", "answer": "2"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x", "answer": "1"}\nnot json\n')
    argv = [a.format(f=f, bad=bad) for a in argv]
    assert main([*argv, "--output_dir", str(tmp_path / "out"), "--no_progress", "--limit", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


def test_an_openai_compatible_reasoner(tmp_path, capsys, openai_server):
    f = write_jsonl(tmp_path / "q.jsonl", [{"question": f"{i}+5-{i}?", "answer": "5"} for i in range(3)])
    argv = ["--task", "custom", "--data_file", str(f), "--answer_type", "numeric", "--method", "zero-cot,none,prompt-planner:fake",
            "--reasoner_base_url", openai_server, "--reasoner_model", "fake", "--output_dir", str(tmp_path / "o"), "--no_progress"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "o" / "summary.json").read_text())["tasks"]["custom"]
    assert rows["zero-cot"]["accuracy"] == 0.0 and rows["none"]["accuracy"] == 1.0 and rows["prompt-planner:fake"]["errors"] == 0
    first = OpenAIHandler.requests[0]  # instruct style for a real endpoint: ZeroCoT's prompt is the system message
    assert first["messages"][0] == {"role": "system", "content": ZERO_COT_PROMPT} and first["model"] == "fake"


@pytest.mark.slow
@needs_bundled
def test_a_killed_run_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "evals", "--method", "random-planner", "--limit", "192", "--concurrency", "32",
            "--output_dir", str(tmp_path), "--no_progress"]
    records = tmp_path / "records" / "arith__random-planner.jsonl"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not records.is_file() or len(records.read_text().splitlines()) < 32):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records.read_text().splitlines()
    assert 32 <= len(before) < 192
    assert subprocess.run(argv, capture_output=True, timeout=600, check=False).returncode == 0
    after = records.read_text().splitlines()
    assert after[: len(before)] == before  # kept, not redone
    assert sorted(json.loads(line)["index"] for line in after) == list(range(192))
    assert json.loads((tmp_path / "summary.json").read_text())["tasks"]["arith"]["random-planner"]["n"] == 192


def test_a_data_file_alone_is_a_custom_task_graded_by_math_verify(tmp_path, openai_server):
    # The fake endpoint boxes 5: a GSM8K-style gold and an equal LaTeX gold are right, 6 is wrong.
    rows = [{"question": "a?", "answer": "2 + 3 = 5\n#### 5"}, {"question": "b?", "answer": "\\frac{10}{2}"}, {"question": "c?", "answer": "6"}]
    f = write_jsonl(tmp_path / "q.jsonl", rows)
    argv = ["--data_file", str(f), "--method", "none", "--reasoner_base_url", openai_server, "--reasoner_model", "fake",
            "--output_dir", str(tmp_path / "o"), "--no_progress"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "o" / "summary.json").read_text())["tasks"]
    assert list(rows) == ["custom"] and rows["custom"]["none"]["accuracy"] == pytest.approx(2 / 3)
    records = [json.loads(line) for line in (tmp_path / "o" / "records" / "custom__none.jsonl").read_text().splitlines()]
    assert [(r["gold"], r["correct"]) for r in records] == [("5", True), ("\\frac{10}{2}", True), ("6", False)]


def test_rsim_without_the_bundled_planner_is_an_error_not_the_heuristic(tmp_path, monkeypatch, capsys, library):
    monkeypatch.setattr(loading, "BUNDLED_PLANNER", tmp_path / "missing")
    with pytest.raises(CheckpointError, match=r"bundled planner is missing .*python -m trainers\.marl.*--planner heuristic"):
        resolve("rsim")
    with pytest.raises(CheckpointError, match="bundled planner is missing"):
        loading.load_planner(None, library)
    assert resolve("rsim", planner_dir="heuristic").planner == "heuristic"  # what the message says to pass works
    assert main(["--method", "rsim", "--output_dir", str(tmp_path / "out"), "--no_progress", "--limit", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the bundled planner is missing") and err.count("\n") == 1, err


def test_the_training_benchmark_points_to_trainers(capsys):
    from evals.bench import main as bench

    assert bench(["train", "--steps", "3"]) == 2
    assert capsys.readouterr().err == "error: the training benchmark moved to trainers; run `python -m trainers.bench --steps 3`\n"


def test_reasoner_mode_turns_sends_each_strategy_as_a_user_turn(tmp_path, openai_server):
    f = write_jsonl(tmp_path / "q.jsonl", [{"question": "2+3?", "answer": "5"}])
    argv = ["--task", "custom", "--data_file", str(f), "--answer_type", "numeric", "--method", "ps+-script", "--reasoner_mode", "turns",
            "--reasoner_base_url", openai_server, "--reasoner_model", "fake", "--output_dir", str(tmp_path / "o"), "--no_progress"]
    OpenAIHandler.requests.clear()
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["reasoner_mode"] == "turns" and summary["tasks"]["custom"]["ps+-script"]["accuracy"] == 1.0
    last = OpenAIHandler.requests[-1]["messages"]
    assert last[-1]["role"] == "user" and sum(m["role"] == "user" for m in last) >= 3  # question + one turn per strategy


def test_the_summary_says_how_often_the_planner_used_its_most_common_plan():
    from rsim_graph.evaluation.runner import summarize

    def rec(*strategies, error=None):
        return {"correct": False, "tokens": 1, "seconds": 0.0, "error": error, "strategies": list(strategies), "trace": []}

    records = [rec("backtrack", "terminate"), rec("backtrack", "terminate"), rec("deep-think", "terminate"), rec("backtrack", "terminate"),
               rec(error="boom")]
    s = summarize("rsim", records)
    assert s.top_plan == ["backtrack", "terminate"] and s.top_plan_share == 0.75  # failed problems have no plan
    alone = summarize("zero-cot", [rec(), rec()])
    assert alone.top_plan is None and alone.top_plan_share is None
