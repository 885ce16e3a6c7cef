"""Run one method over a list of problems and score it with the runtime's grader."""

from __future__ import annotations

import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rsim_graph.errors import RSIMError
from rsim_graph.grading import extract_answer
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import default_planner_spec, load_planner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.base import Problem

logger = logging.getLogger(__name__)

# method name -> planner spec for `load_planner` (zero-cot has no planner)
PLANNER_METHODS = {"ps+": "ps+", "random-planner": "random", "heuristic": "heuristic", "heuristic-check": "heuristic-check"}


@dataclass
class Summary:
    method: str
    accuracy: float
    n: int
    mean_strategies: float  # distinct strategies per problem
    mean_tokens: float  # reasoner-generated tokens per problem
    errors: int
    seconds: float


def planner_spec(method: str) -> str | None:
    if method == "zero-cot":
        return None
    if method in PLANNER_METHODS:
        return PLANNER_METHODS[method]
    if method == "rsim":
        return default_planner_spec()
    if method.startswith("rsim:"):
        return method.removeprefix("rsim:")
    raise RSIMError(
        f"unknown method {method!r}; choose zero-cot, ps+, random-planner, heuristic, heuristic-check, rsim or rsim:<planner dir>"
    )


def evaluate(
    method: str,
    problems: list[Problem],
    reasoner: Reasoner,
    library: StrategyLibrary,
    *,
    max_steps: int = 12,
    max_step_tokens: int = 96,
    max_total_tokens: int = 1024,
    seed: int = 0,
    chunk: int = 64,
) -> tuple[Summary, list[dict]]:
    """Answer every problem with `method`; returns the summary and one record per problem."""
    spec = planner_spec(method)
    t0 = time.perf_counter()
    records: list[dict] = []
    if spec is None:
        with ThreadPoolExecutor(max_workers=chunk) as pool:
            outs = list(pool.map(lambda p: _zero_cot(reasoner, p, max_total_tokens), problems))
        records = outs
    else:
        planner = load_planner(spec, library, seed=seed, greedy=True)
        graph = build_graph(planner, reasoner, library, max_steps=max_steps, max_step_tokens=max_step_tokens, max_total_tokens=max_total_tokens)
        for i in range(0, len(problems), chunk):
            part = problems[i : i + chunk]
            for p, out in zip(part, run_batch(graph, [p.question for p in part], return_exceptions=True), strict=True):
                records.append(_record(p, out))
    ok = [r for r in records if r["error"] is None]
    summary = Summary(
        method=method,
        accuracy=sum(r["correct"] for r in records) / max(1, len(records)),
        n=len(records),
        mean_strategies=statistics.fmean([len(set(r["strategies"])) for r in ok]) if ok else 0.0,
        mean_tokens=statistics.fmean([r["tokens"] for r in ok]) if ok else 0.0,
        errors=len(records) - len(ok),
        seconds=time.perf_counter() - t0,
    )
    return summary, records


def _zero_cot(reasoner: Reasoner, p: Problem, max_tokens: int) -> dict:
    try:
        out = reasoner.complete(p.question, max_tokens)
    except RSIMError as e:
        return {"question": p.question, "gold": p.answer, "prediction": None, "correct": False, "strategies": [], "tokens": 0, "error": str(e)}
    pred = extract_answer(out.text)
    tokens = len(out.completion_ids) if out.completion_ids is not None else len(out.text) // 4
    return {"question": p.question, "gold": p.answer, "prediction": pred, "correct": p.grade(pred), "strategies": [], "tokens": tokens, "error": None, "trace": out.text}


def _record(p: Problem, out) -> dict:
    if isinstance(out, Exception):
        return {"question": p.question, "gold": p.answer, "prediction": None, "correct": False, "strategies": [], "tokens": 0, "error": f"{type(out).__name__}: {out}"}
    return {
        "question": p.question,
        "gold": p.answer,
        "prediction": out["answer"],
        "correct": p.grade(out["answer"]),
        "strategies": [s["strategy"] for s in out["steps"]],
        "tokens": out["usage"]["reasoner_tokens"],
        "stop_reason": out["stop_reason"],
        "error": None,
        "trace": [{"strategy": s["strategy"], "text": s["text"]} for s in out["steps"]],
    }


def markdown_table(summaries: list[Summary]) -> str:
    rows = ["| Method | Accuracy | #Strategy | Tokens | n | errors |", "|---|---|---|---|---|---|"]
    for s in summaries:
        rows.append(f"| {s.method} | {100 * s.accuracy:.1f} | {s.mean_strategies:.2f} | {s.mean_tokens:.0f} | {s.n} | {s.errors} |")
    return "\n".join(rows)
