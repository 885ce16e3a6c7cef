"""Run one method over a list of problems, grade it with the runtime's grader, and keep a resumable record.

The evaluation that `python -m evals` and the trainers' before/after tables both run.

Each finished problem is appended to a JSON Lines file at once, so a run killed half-way and started
again with the same file skips what is done. A problem that fails (a bad row, a backend error) is
recorded with its error and counted, and the run goes on.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rsim_graph.errors import RSIMError
from rsim_graph.grading import extract_answer
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import load_planner
from rsim_graph.methods import Method, resolve
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.base import Problem

logger = logging.getLogger(__name__)


@dataclass
class Summary:
    method: str
    accuracy: float
    n: int
    mean_strategies: float  # distinct strategies per problem
    mean_tokens: float  # reasoner-generated tokens per problem
    std_tokens: float
    errors: int
    seconds: float  # wall time spent on these problems (runs batched together share it)
    follow: float | None = None  # R_follow: share of steps that carry out their injected strategy (graph methods)


def summarize(method: str, records: list[dict], library: StrategyLibrary | None = None) -> Summary:
    ok = [r for r in records if r["error"] is None]
    tokens = [r["tokens"] for r in ok]
    steps = [t for r in ok for t in r.get("trace", []) if t["strategy"]]
    follow = statistics.fmean(library.get(t["strategy"]).followed_by(t["text"]) for t in steps) if library and steps else None
    return Summary(
        method=method,
        accuracy=sum(r["correct"] for r in records) / max(1, len(records)),
        n=len(records),
        mean_strategies=statistics.fmean([len(set(r["strategies"])) for r in ok]) if ok else 0.0,
        mean_tokens=statistics.fmean(tokens) if tokens else 0.0,
        std_tokens=statistics.pstdev(tokens) if len(tokens) > 1 else 0.0,
        errors=len(records) - len(ok),
        seconds=sum(r["seconds"] for r in records),  # recorded per problem, so a resumed run counts the same
        follow=follow,
    )


def read_done(path: Path | None) -> dict[int, dict]:
    """Records already in `path`, by problem index. A torn last line (a run killed while writing) is
    cut from the file, so that new records start on a line of their own."""
    done: dict[int, dict] = {}
    if path is None or not path.is_file():
        return done
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[r["index"]] = r
    return done


def evaluate(
    method: str | Method,
    problems: list[Problem],
    reasoner: Reasoner,
    library: StrategyLibrary,
    *,
    max_steps: int = 12,
    max_step_tokens: int = 96,
    max_total_tokens: int = 1024,
    injection: str = "prefill",
    seed: int = 0,
    chunk: int = 64,
    records_path: Path | None = None,
    progress: bool = False,
    planner_base_url: str | None = None,
    api_key: str | None = None,
) -> tuple[Summary, list[dict]]:
    """Answer every problem with `method`; returns the summary and one record per problem, in order.

    With `records_path`, records are appended there as they finish and problems already recorded are skipped.
    """
    m = method if isinstance(method, Method) else resolve(method)
    # Resume only what matches: a record whose question differs (another seed, file or limit) is redone.
    done = {i: r for i, r in read_done(records_path).items() if i < len(problems) and r["question"] == problems[i].question}
    todo = [(i, p) for i, p in enumerate(problems) if i not in done]
    graph = None
    if m.planner is not None and todo:
        planner = load_planner(m.planner, library, seed=seed, greedy=True, base_url=planner_base_url, api_key=api_key)
        graph = build_graph(
            planner, reasoner, library, max_steps=max_steps, max_step_tokens=max_step_tokens, max_total_tokens=max_total_tokens, injection=injection
        )
    history = [{"role": "system", "content": m.system_prompt}] if m.system_prompt else None
    bar = tqdm(total=len(problems), initial=len(done), desc=m.name, disable=not progress, dynamic_ncols=True, leave=False)
    correct = sum(r["correct"] for r in done.values())
    out = open(records_path, "a") if records_path else None  # noqa: SIM115 - closed in finally
    try:
        with ThreadPoolExecutor(max_workers=chunk) as pool:
            for k in range(0, len(todo), chunk):
                part = todo[k : k + chunk]
                if graph is not None:
                    runnable = [(i, p) for i, p in part if not p.meta.get("error")]
                    t = time.perf_counter()
                    states = run_batch(graph, [p.question for _, p in runnable], return_exceptions=True, extra={"history": history, "sampling": {"seed": seed}})
                    share = (time.perf_counter() - t) / max(1, len(runnable))  # runs share batched passes: wall time per run
                    results = dict(zip([i for i, _ in runnable], states, strict=True))
                    recs = list(pool.map(lambda ip, res=results, sh=share: _graph_record(ip[0], ip[1], res.get(ip[0]), sh), part))
                else:
                    t = time.perf_counter()
                    recs = list(pool.map(lambda ip: _alone_record(ip[0], ip[1], reasoner, max_total_tokens, history), part))
                    for r in recs:  # concurrent requests share the wall time, as batched graph runs do
                        r["seconds"] = (time.perf_counter() - t) / len(part)
                for r in recs:
                    done[r["index"]] = r
                    correct += r["correct"]
                    if out:
                        out.write(json.dumps(r) + "\n")
                        out.flush()
                bar.update(len(recs))
                bar.set_postfix(acc=f"{100 * correct / max(1, bar.n):.1f}%")
    finally:
        bar.close()
        if out:
            out.close()
    records = [done[i] for i in range(len(problems)) if i in done]
    return summarize(m.name, records, library), records


def _base(i: int, p: Problem) -> dict:
    return {"index": i, "id": p.meta.get("id", i), "question": p.question, "gold": p.answer}


def _failed(i: int, p: Problem, error: str) -> dict:
    return {**_base(i, p), "prediction": None, "correct": False, "strategies": [], "tokens": 0, "seconds": 0.0, "error": error, "trace": []}


def _alone_record(i: int, p: Problem, reasoner: Reasoner, max_tokens: int, history: list | None) -> dict:
    if p.meta.get("error"):
        return _failed(i, p, p.meta["error"])
    try:
        out = reasoner.complete(p.question, max_tokens, history=history)
    except RSIMError as e:
        return _failed(i, p, str(e))
    pred = extract_answer(out.text)
    upstream = (out.meta.get("usage") or {}).get("output_tokens")  # an OpenAI-compatible server's own count
    tokens = len(out.completion_ids) if out.completion_ids is not None else upstream if upstream is not None else len(out.text) // 4
    return {
        **_base(i, p), "prediction": pred, "correct": p.grade_output(pred, out.text), "strategies": [], "tokens": tokens,
        "seconds": 0.0, "error": None, "trace": [{"strategy": "", "text": out.text}],
    }


def _graph_record(i: int, p: Problem, out, seconds: float) -> dict:
    if p.meta.get("error"):
        return _failed(i, p, p.meta["error"])
    if out is None or isinstance(out, BaseException):
        return _failed(i, p, f"{type(out).__name__}: {out}")
    text = "\n\n".join(s["text"] for s in out["steps"])
    pred = extract_answer(text)  # graded like a single reply: never the terminating step's prose
    return {
        **_base(i, p),
        "prediction": pred,
        "correct": p.grade_output(pred, text),
        "strategies": [s["strategy"] for s in out["steps"]],
        "tokens": out["usage"]["reasoner_tokens"],
        "seconds": seconds,
        "stop_reason": out["stop_reason"],
        "error": None,
        "trace": [{"strategy": s["strategy"], "text": s["text"]} for s in out["steps"]],
    }
