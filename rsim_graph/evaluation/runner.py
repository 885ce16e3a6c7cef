"""Run one method over a list of problems, grade it with the runtime's grader, and keep a resumable record.

The evaluation that `python -m evals` and the trainers' before/after tables both run.

Each finished problem is appended to a JSON Lines file at once, so a run killed half-way and started
again with the same file skips what is done. A problem that fails (a bad row, a backend error) is
recorded with its error and counted, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rsim_graph.config import RuntimeConfig
from rsim_graph.errors import RSIMError
from rsim_graph.scoring.grading import extract_answer
from rsim_graph.loading import Runtime, load_runtime
from rsim_graph.evaluation.methods import Method, resolve
from rsim_graph.planners.simple import ScriptedPlanner
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
    top_plan: list[str] | None = None  # the most common strategy sequence (graph methods)
    top_plan_share: float | None = None  # share of problems answered with it: 1.0 means the plan ignores the problem


def summarize(method: str, records: list[dict], library: StrategyLibrary | None = None) -> Summary:
    ok = [r for r in records if r["error"] is None]
    tokens = [r["tokens"] for r in ok]
    steps = [t for r in ok for t in r.get("trace", []) if t["strategy"]]
    follow = statistics.fmean(library.get(t["strategy"]).followed_by(t["text"]) for t in steps) if library and steps else None
    plans = Counter(tuple(r["strategies"]) for r in ok if r["strategies"])
    top_plan, top_count = plans.most_common(1)[0] if plans else ((), 0)
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
        top_plan=list(top_plan) if plans else None,
        top_plan_share=top_count / sum(plans.values()) if plans else None,
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
    config: RuntimeConfig | None = None,
    *,
    chunk: int = 64,
    records_path: Path | None = None,
    progress: bool = False,
) -> tuple[Summary, list[dict]]:
    """Answer every problem with `method`; returns the summary and one record per problem, in order.

    `config` sets the budgets, the injection format, the seed and a `prompt:` planner's server (its `planner`
    is the method's). Each answer is a `runs.Reply`, as the CLI, the server and `RSIMChatModel` build it.
    With `records_path`, records are appended there as they finish and problems already recorded are skipped.
    """
    m = method if isinstance(method, Method) else resolve(method)
    config = config or RuntimeConfig()
    # Resume only what matches: a record of another question (seed, file, limit) or another run (reasoner, planner,
    # budgets, injection, sampling) is redone.
    run = fingerprint(m, config)
    done = {
        i: r for i, r in read_done(records_path).items() if i < len(problems) and r["question"] == problems[i].question and r.get("run") == run
    }
    todo = [(i, p) for i, p in enumerate(problems) if i not in done]
    runtime = None
    if todo:  # the method's planner on the given reasoner; a reasoner-alone method never calls it
        planner = None if m.planner is not None else ScriptedPlanner([])
        runtime = load_runtime(dataclasses.replace(config, planner=m.planner), planner=planner, reasoner=reasoner, library=library)
    history = [{"role": "system", "content": m.system_prompt}] if m.system_prompt else None
    bar = tqdm(total=len(problems), initial=len(done), desc=m.name, disable=not progress, dynamic_ncols=True, leave=False)
    correct = sum(r["correct"] for r in done.values())
    out = open(records_path, "a") if records_path else None  # noqa: SIM115 - closed in finally
    try:
        with ThreadPoolExecutor(max_workers=chunk) as pool:  # a thread per problem in flight: they share batched passes
            for k in range(0, len(todo), chunk):
                part = todo[k : k + chunk]
                t = time.perf_counter()
                recs = list(pool.map(lambda ip: _record(ip[0], ip[1], runtime, m.planner is not None, history), part))
                for r in recs:  # runs share batched passes: wall time per run
                    r["seconds"] = 0.0 if r["error"] else (time.perf_counter() - t) / len(part)
                for r in recs:
                    r["run"] = run
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


def fingerprint(method: Method, config: RuntimeConfig) -> dict:
    """What makes two records of one problem comparable: the method and every runtime setting that changes an answer."""
    keys = ("reasoner", "reasoner_base_url", "reasoner_model", "reasoner_mode", "injection", "strategies", "temperature", "seed",
            "max_reasoning_steps", "max_step_tokens", "max_total_tokens", "sample_planner")
    return {"method": method.name, "planner": method.planner, "system_prompt": method.system_prompt, **{k: getattr(config, k) for k in keys}}


def _base(i: int, p: Problem) -> dict:
    return {"index": i, "id": p.meta.get("id", i), "question": p.question, "gold": p.answer}


def _failed(i: int, p: Problem, error: str) -> dict:
    return {**_base(i, p), "prediction": None, "correct": False, "strategies": [], "tokens": 0, "seconds": 0.0, "error": error, "trace": []}


def _record(i: int, p: Problem, runtime: Runtime, injection: bool, history: list | None) -> dict:
    """One problem's record, from the reply the runtime gives (graded like a single reply: the steps joined,
    never the terminating step's prose)."""
    if p.meta.get("error"):
        return _failed(i, p, p.meta["error"])
    sampling = {"seed": runtime.config.seed}
    try:
        reply = runtime.reply(p.question, strategy_injection=injection, history=history, sampling=sampling)
    except Exception as e:  # noqa: BLE001 - one problem's failure (a bad row, a backend error) is recorded; the run goes on
        return _failed(i, p, str(e) if isinstance(e, RSIMError) else f"{type(e).__name__}: {e}")
    pred = extract_answer(reply.content)
    return {
        **_base(i, p),
        "prediction": pred,
        "correct": p.grade_output(pred, reply.content),
        "strategies": [s.strategy for s in reply.steps if s.strategy],
        "tokens": reply.done.completion_tokens,
        "seconds": 0.0,
        "stop_reason": reply.done.stop_reason,
        "error": None,
        "trace": [{"strategy": s.strategy or "", "text": s.text} for s in reply.steps],
    }
