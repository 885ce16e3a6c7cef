import json
import subprocess
import sys

import pytest

from rsim_graph.__main__ import main
from rsim_graph.loading import BUNDLED_REASONER


def run(capsys, *argv):
    code = main(["solve", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_solve_json_with_a_local_model(capsys, tiny_lm_dir):
    code, out, _ = run(capsys, "What is 2+3?", "--json", "--reasoner", str(tiny_lm_dir), "--planner", "scripted:understand,validate", "--max_step_tokens", "8")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"answer", "steps", "stop_reason", "usage"}
    assert [s["strategy"] for s in data["steps"]] == ["understand", "validate", "terminate"]
    assert data["stop_reason"] == "terminate" and data["usage"]["steps"] == 3
    assert 0 < data["usage"]["completion_tokens"] <= 24 and data["usage"]["prompt_tokens"] > 0


def test_solve_text_output_annotates_each_step(capsys, tiny_lm_dir):
    code, out, _ = run(capsys, "What is 2+3?", "--reasoner", str(tiny_lm_dir), "--planner", "random", "--max_reasoning_steps", "3", "--max_step_tokens", "4")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1].startswith("answer: ") and any(line.startswith("[terminate] ") for line in lines)


@pytest.mark.parametrize(
    ("old", "new"), [("--max_steps", "--max_reasoning_steps"), ("--api_key", "--reasoner_api_key"), ("--greedy_planner", "greedy by default")]
)
def test_a_renamed_flag_names_its_new_name(capsys, old, new):
    with pytest.raises(SystemExit) as e:
        main(["solve", "q", old, "3"] if old != "--greedy_planner" else ["solve", "q", old])
    err = capsys.readouterr().err
    assert e.value.code == 2 and new in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["  "], "the question is empty"),
        (["q", "--reasoner", "/nonexistent/model"], "no model at /nonexistent/model"),
        (["q", "--planner", "/nonexistent/planner", "--reasoner", "{lm}"], "neither a directory nor a known planner"),
        (["q", "--planner", "scripted:guess", "--reasoner", "{lm}"], "unknown strategy 'guess'"),
        (["q", "--reasoner_base_url", "http://127.0.0.1:9/v1", "--reasoner_model", "m", "--planner", "random"], "cannot reach the reasoner's server"),
        (["q", "--reasoner_base_url", "http://127.0.0.1:9/v1"], "needs --reasoner_model"),
        (["q", "--strategies", "/nonexistent.yaml"], "strategy file /nonexistent.yaml does not exist"),
    ],
)
def test_bad_input_is_one_line_without_traceback(capsys, tiny_lm_dir, argv, message):
    code, _, err = run(capsys, *[a.replace("{lm}", str(tiny_lm_dir)) for a in argv])
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_default_command_uses_the_bundled_models():
    # A subprocess, as a user runs it: no flags at all.
    proc = subprocess.run([sys.executable, "-m", "rsim_graph", "solve", "Compute (12+7)*3.", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stop_reason"] in ("terminate", "max_steps", "max_total_tokens", "repeat")
    assert data["steps"][0]["strategy"] and data["answer"]
