"""The fixed-plan sweep (`python -m evals.plans`): the plans, the problem types, the oracle and a run end to end."""

from __future__ import annotations

import json

import pytest

from evals.plans import best_plan, final_plans, fixed_plans, main, oracle_accuracy, oracle_picks, parse_args, problem_type
from rsim_graph.strategies import load_strategies
from rsim_graph.tasks.base import Problem


def recs(*correct: int) -> list[dict]:
    return [{"correct": bool(c)} for c in correct]


def test_fixed_plans_cover_terminate_every_one_and_two_step_plan_and_ps_plus():
    library = load_strategies()
    plans = fixed_plans(library)
    assert len(plans) == 1 + 8 + 64 + 1
    assert plans["terminate"] == []
    assert plans["deep-think"] == ["deep-think"]
    assert plans["validate > backtrack"] == ["validate", "backtrack"]
    assert plans["ps+"] == ["understand", "sub-plan"] + ["deep-think"] * 4
    assert not any("terminate" in ids for ids in plans.values())  # the scripted planner adds it last
    assert len(fixed_plans(library, max_length=1)) == 1 + 8 + 1


def test_problem_type_reads_form_and_operation_count():
    assert problem_type(Problem("Compute (4+3)-2.", "5", {"ops": [("+", 3), ("-", 2)]})) == "expression, 2 ops"
    assert problem_type(Problem("Start with 4. Add 3. What is the result?", "7", {"ops": [("+", 3)]})) == "word, 1 op"
    assert problem_type(Problem("What is 2+2?", "4")) == "all"


def test_best_plan_counts_correct_answers_and_breaks_ties_towards_the_earlier_plan():
    results = {"terminate": recs(1, 0, 0, 0), "a": recs(1, 1, 0, 0), "b": recs(0, 0, 1, 1)}
    assert best_plan(results) == "a"  # a and b tie at 2; a comes first
    assert best_plan(results, [2, 3]) == "b"
    assert best_plan(results, [0]) == "terminate"


def test_oracle_picks_the_best_plan_per_type_and_scores_it_elsewhere():
    sweep = {"t": recs(0, 0, 1, 0), "a": recs(1, 1, 0, 0), "b": recs(0, 0, 1, 1)}
    types = ["x", "x", "y", "y"]
    picks = oracle_picks(sweep, types)
    assert picks == {"x": "a", "y": "b"}
    assert oracle_accuracy(sweep, types, picks, "a") == 1.0
    final = {"t": recs(1, 1, 1, 1), "a": recs(1, 0, 0, 0), "b": recs(0, 0, 1, 0)}
    assert oracle_accuracy(final, ["x", "x", "y", "y"], picks, "a") == 0.5  # picks from the sweep, not the final set
    assert oracle_accuracy(final, ["x", "z", "y", "y"], picks, "t") == 0.75  # an unseen type gets the fallback


def test_the_final_problems_get_terminate_the_best_plans_and_the_oracles_picks_once_each():
    ranked = ["a > b", "c", "d", "terminate", "e"]
    assert final_plans(ranked, {"word": "e", "expression": "a > b"}, "terminate", 2) == ["terminate", "a > b", "c", "e"]
    assert final_plans(ranked, {}, "terminate", 0) == ["terminate"]


def test_the_sweep_and_the_final_problems_must_differ(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--sweep_seed", "3", "--seed", "3"])
    assert "--sweep_seed must differ from --seed" in capsys.readouterr().err


def test_a_bad_injection_is_one_line(capsys):
    assert main(["--injection", "sideways", "--output_dir", "unused"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown injection 'sideways'; choose from prefill, system, headers, auto"


def test_sweep_chooses_on_one_set_scores_on_another_and_resumes(tmp_path, capsys):
    argv = ["--task", "arith-easy", "--injection", "prefill", "--sweep_limit", "4", "--limit", "3", "--max_plan_length", "1",
            "--top", "2", "--output_dir", str(tmp_path), "--max_step_tokens", "24", "--max_total_tokens", "96"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "prefill" / "summary.json").read_text())
    assert summary["sweep"]["problems"] == 4 and summary["final"]["problems"] == 3
    assert (summary["sweep"]["seed"], summary["final"]["seed"]) == (1, 0)
    assert len(summary["sweep"]["accuracy"]) == 10
    ranked = sorted(summary["sweep"]["accuracy"], key=lambda n: -summary["sweep"]["accuracy"][n])
    chosen = set(summary["final"]["accuracy"])
    assert {"terminate", *ranked[:2], *summary["sweep"]["oracle_picks"].values()} == chosen
    assert summary["best_plan"] == ranked[0]
    assert summary["format_only"] == summary["final"]["accuracy"]["terminate"]
    assert summary["best_fixed"] == summary["final"]["accuracy"][ranked[0]]
    assert summary["oracle_in_sample"] >= max(summary["final"]["accuracy"][p] for p in chosen) - 1e-9
    lines = (tmp_path / "prefill" / "sweep" / "deep-think.jsonl").read_text().splitlines()
    assert len(lines) == 4
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("| injection | format-only") and "| `prefill` |" in report
    assert main(argv) == 0  # a rerun resumes: no problem is answered again
    assert len((tmp_path / "prefill" / "sweep" / "deep-think.jsonl").read_text().splitlines()) == 4
