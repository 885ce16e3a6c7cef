"""`python -m evals.plans`: where adaptive strategy choice can pay, measured with fixed plans.

    python -m evals.plans --reasoner smollm2 --task arith-easy --injection system,headers

Every fixed plan (a scripted planner) answers the same problems: `terminate` alone (the step protocol and
the answer prompt, no strategy: the format-only baseline), every `X -> terminate` and `X -> Y -> terminate`
over the library's non-terminal strategies, and PS+. Then three figures per injection format:

- **format-only**: `terminate` alone;
- **best fixed plan**: the plan with the best sweep accuracy; best - format-only is what strategies add;
- **oracle by type**: the best plan for each problem type (word problem or expression, number of operations);
  oracle - best fixed plan is the headroom an adaptive planner can win.

Choosing the best of 74 plans on the sweep's problems flatters the winner (selection on noise), so the
choice is made on the sweep (`--sweep_seed`, `--sweep_limit`) and scored on other problems (`--seed`,
`--limit`): the best `--top` plans, the oracle's picks and `terminate` alone are re-run there. The final
problems are those `python -m evals --seed S --limit N` answers, so trained planners compare on the same ones.

Records go to `--output_dir/<injection>/{sweep,final}/<plan>.jsonl` (a rerun resumes), each injection's figures
to `<injection>/summary.json`, and `report.md` covers every injection measured in `--output_dir` so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

from evals.cli import run_command
from rsim_graph.config import add_runtime_flags, config_from
from rsim_graph.errors import InputError, RSIMError
from rsim_graph.evaluation.runner import evaluate
from rsim_graph.loading import load_reasoner, resolve_injection
from rsim_graph.evaluation.methods import Method
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.strategies import StrategyLibrary, load_strategies
from rsim_graph.tasks.base import Problem
from rsim_graph.tasks.registry import load_task

logger = logging.getLogger(__name__)
FLAGS = ["reasoner", "strategies", "max_reasoning_steps", "max_step_tokens", "max_total_tokens"]


def fixed_plans(library: StrategyLibrary, max_length: int = 2) -> dict[str, list[str]]:
    """Plan name -> strategy ids before the terminating step: `terminate`, every sequence of 1 to `max_length`
    non-terminal strategies, and PS+."""
    steps = [s for s in library.ids if s != library.terminal_id]
    plans: dict[str, list[str]] = {library.terminal_id: []}
    frontier: list[list[str]] = [[]]
    for _ in range(max_length):
        frontier = [p + [s] for p in frontier for s in steps]
        plans.update({" > ".join(p): p for p in frontier})
    ps = ScriptedPlanner.plan_and_solve().sequence
    if all(s in library.ids for s in ps):  # a custom library may not have PS+'s strategies
        plans["ps+"] = ps
    return plans


def problem_type(p: Problem) -> str:
    """What an adaptive planner could condition on: ArithWorld's form and operation count; one type otherwise."""
    ops = p.meta.get("ops")
    if ops is None:
        return "all"
    form = "expression" if p.question.startswith("Compute") else "word"
    return f"{form}, {len(ops)} op{'s' if len(ops) > 1 else ''}"


def accuracy(records: list[dict]) -> float:
    return sum(r["correct"] for r in records) / max(1, len(records))


def best_plan(results: dict[str, list[dict]], indices: list[int] | None = None) -> str:
    """The plan with the most correct answers (on `indices` only, when given); ties go to the earlier plan,
    which is the shorter one."""
    def score(plan: str) -> int:
        recs = results[plan]
        return sum(recs[i]["correct"] for i in (range(len(recs)) if indices is None else indices))

    return max(results, key=score)  # max keeps the first of equal scores


def oracle_picks(results: dict[str, list[dict]], types: list[str]) -> dict[str, str]:
    """Problem type -> the best plan on that type's problems."""
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(types):
        by_type[t].append(i)
    return {t: best_plan(results, idx) for t, idx in sorted(by_type.items())}


def oracle_accuracy(results: dict[str, list[dict]], types: list[str], picks: dict[str, str], fallback: str) -> float:
    """Accuracy when each problem is answered by its type's pick (`fallback` for a type the picks never saw)."""
    return sum(results[picks.get(t, fallback)][i]["correct"] for i, t in enumerate(types)) / max(1, len(types))


def final_plans(ranked: list[str], picks: dict[str, str], terminal: str, top: int) -> list[str]:
    """The plans scored on the final problems: `terminate` alone (the format-only baseline), the sweep's best `top`
    and the oracle's picks, each once."""
    return list(dict.fromkeys([terminal, *ranked[:top], *picks.values()]))


def run_plans(plans: dict[str, list[str]], problems: list[Problem], reasoner, library, config, out_dir: Path, chunk: int) -> dict[str, list[dict]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, ids in plans.items():
        method = Method(name, "scripted:" + ",".join(ids))
        summary, records = evaluate(method, problems, reasoner, library, config, chunk=chunk, records_path=out_dir / f"{name.replace(' > ', '__')}.jsonl")
        if summary.errors:
            raise RSIMError(f"plan {name!r}: {summary.errors} of {summary.n} problems failed (first: {next(r['error'] for r in records if r['error'])})")
        results[name] = records
        logger.info("  %s: %.1f%% (R_follow %.2f, %.0f tokens)", name, 100 * summary.accuracy, summary.follow or 0, summary.mean_tokens)
    return results


def measure(injection: str, args, reasoner, library) -> dict:
    """The sweep, the choice and the final scoring for one injection format."""
    config = dataclasses.replace(config_from(args), injection=injection, planner=None)
    plans = fixed_plans(library, args.max_plan_length)
    sweep_problems = load_task(args.task, limit=args.sweep_limit, seed=args.sweep_seed)
    final_problems = load_task(args.task, limit=args.limit, seed=args.seed)
    base = args.output_dir / injection
    logger.info("%s: %d plans on %d sweep problems", injection, len(plans), len(sweep_problems))
    sweep = run_plans(plans, sweep_problems, reasoner, library, dataclasses.replace(config, seed=args.sweep_seed), base / "sweep", args.concurrency)
    sweep_types = [problem_type(p) for p in sweep_problems]
    ranked = sorted(sweep, key=lambda n: -accuracy(sweep[n]))  # a stable sort: ties keep the plans' order
    picks = oracle_picks(sweep, sweep_types)
    terminal = library.terminal_id
    chosen = final_plans(ranked, picks, terminal, args.top)
    logger.info("%s: %d plans on %d final problems", injection, len(chosen), len(final_problems))
    final = run_plans({n: plans[n] for n in chosen}, final_problems, reasoner, library, dataclasses.replace(config, seed=args.seed), base / "final", args.concurrency)
    final_types = [problem_type(p) for p in final_problems]
    best = ranked[0]
    in_sample = oracle_picks(final, final_types)
    result = {
        "injection": injection,
        "sweep": {"problems": len(sweep_problems), "seed": args.sweep_seed, "accuracy": {n: accuracy(r) for n, r in sweep.items()},
                  "types": dict(sorted(_count(sweep_types).items())), "oracle_picks": picks, "oracle": oracle_accuracy(sweep, sweep_types, picks, ranked[0])},
        "final": {"problems": len(final_problems), "seed": args.seed, "accuracy": {n: accuracy(r) for n, r in final.items()},
                  "types": dict(sorted(_count(final_types).items())),
                  "by_type": {n: _by_type(r, final_types) for n, r in final.items()}},
        "format_only": accuracy(final[terminal]),
        "best_plan": best,
        "best_fixed": accuracy(final[best]),
        "oracle": oracle_accuracy(final, final_types, picks, best),  # picks made on the sweep, scored on the final problems
        "oracle_in_sample": oracle_accuracy(final, final_types, in_sample, best),  # picks made on the final problems themselves
        "oracle_in_sample_picks": in_sample,
    }
    (base / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def _count(types: list[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for t in types:
        out[t] += 1
    return out


def _by_type(records: list[dict], types: list[str]) -> dict[str, float]:
    idx: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(types):
        idx[t].append(i)
    return {t: accuracy([records[i] for i in ix]) for t, ix in sorted(idx.items())}


def report(results: list[dict]) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "| injection | format-only (`terminate`) | best fixed plan (chosen on the sweep) | strategies add | oracle by type (chosen on the sweep) | headroom | oracle by type (in-sample) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| `{r['injection']}` | {pct(r['format_only'])} | {pct(r['best_fixed'])} (`{r['best_plan']}`) | {100 * (r['best_fixed'] - r['format_only']):+.1f} "
            f"| {pct(r['oracle'])} | {100 * (r['oracle'] - r['best_fixed']):+.1f} | {pct(r['oracle_in_sample'])} |"
        )
    for r in results:
        n, f = r["sweep"]["problems"], r["final"]["problems"]
        top = sorted(r["sweep"]["accuracy"].items(), key=lambda kv: -kv[1])
        lines += ["", f"`{r['injection']}`: sweep accuracy on {n} problems (seed {r['sweep']['seed']}), the best 10 of {len(top)} and the worst 3; "
                  f"{f} final problems (seed {r['final']['seed']}) where run", "", "| plan | sweep | final |", "|---|---|---|"]
        for name, acc in top[:10] + top[max(10, len(top) - 3) :]:
            fin = r["final"]["accuracy"].get(name)
            lines.append(f"| `{name}` | {pct(acc)} | {pct(fin) if fin is not None else '-'} |")
        types = list(r["final"]["types"])
        lines += ["", f"`{r['injection']}`: final accuracy by problem type (problems: "
                  + ", ".join(f"{t} {c}" for t, c in r["final"]["types"].items()) + "); oracle picks from the sweep: "
                  + "; ".join(f"{t} -> `{p}`" for t, p in r["sweep"]["oracle_picks"].items()), "",
                  "| plan | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
        for name, by in r["final"]["by_type"].items():
            lines.append(f"| `{name}` | " + " | ".join(pct(by[t]) for t in types) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals.plans", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="arith-easy", help="an ArithWorld task or any task `python -m evals` takes (one type unless ArithWorld)")
    p.add_argument("--sweep_limit", type=int, default=100, help="problems every plan answers")
    p.add_argument("--sweep_seed", type=int, default=1, help="draws the sweep's problems (keep it apart from --seed)")
    p.add_argument("--limit", type=int, default=200, help="final problems the chosen plans answer")
    p.add_argument("--top", type=int, default=5, help="how many of the sweep's best plans are scored on the final problems")
    p.add_argument("--max_plan_length", type=int, default=2, help="strategies before terminate in the longest plan")
    p.add_argument("--output_dir", type=Path, default=Path("outputs/plans"), help="records, summary.json and report.md")
    p.add_argument("--concurrency", type=int, default=100, help="problems in flight at once")
    p.add_argument("--injection", default="system,headers", help="comma-separated injection formats: prefill, system, headers, auto")
    add_runtime_flags(p, FLAGS + ["seed"])
    p.set_defaults(max_step_tokens=48, max_total_tokens=256)
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = 0
    if args.sweep_seed == args.seed:
        p.error("--sweep_seed must differ from --seed: the plans are chosen on one set of problems and scored on another")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)  # each plan's score as it finishes: a sweep runs for an hour or more
    args = parse_args(argv)
    return run_command(lambda: sweep(args))


def sweep(args: argparse.Namespace) -> str:
    """Measure every injection asked for, then the report of all measured into `--output_dir` so far."""
    library = load_strategies(args.strategies)
    injections = [i.strip() for i in args.injection.split(",") if i.strip()]
    bad = [i for i in injections if i not in ("auto", "prefill", "system", "headers")]
    if bad:
        raise InputError(f"unknown injection {bad[0]!r}; choose from prefill, system, headers, auto")
    load_task(args.task, limit=1, seed=args.seed)  # a bad task fails before the model loads
    reasoner = load_reasoner(args.reasoner, seed=args.seed)
    for i in injections:
        measure(resolve_injection(i, args.reasoner, None, getattr(reasoner, "tokenizer", None)), args, reasoner, library)
    # every injection measured into this directory so far, so that runs of one injection each add up to one report
    results = [json.loads(f.read_text()) for f in sorted(args.output_dir.glob("*/summary.json"))]
    text = report(results)
    (args.output_dir / "report.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
