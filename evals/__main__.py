"""`python -m evals`: the paper's comparison tables on any task, reasoner and planner.

    python -m evals                                             # ArithWorld, bundled models: ZeroCoT, PS+, random planner, rSIM
    python -m evals --task gsm8k --data_file ../shared/data/gsm8k_test.jsonl --method zero-cot,rsim \\
        --planner outputs/marl/planner --reasoner_base_url http://localhost:8000/v1 --reasoner_model Qwen/Qwen2.5-7B-Instruct
    python -m evals --data_file my.jsonl --question_field prompt --answer_field target   # a custom task, graded by math-verify

Writes `summary.json`, `summary.md`, one `records/<task>__<method>.jsonl` per row (a rerun with the
same --output_dir resumes), and PNG plots to --output_dir, and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from evals.cli import run_command
from evals.report import plot, score_table, token_table
from rsim_graph.config import add_runtime_flags, config_from, refuse_renamed
from rsim_graph.errors import InputError
from rsim_graph.evaluation.runner import evaluate
from rsim_graph.loading import BUNDLED_PLANNER, is_bundled, load_reasoner, reasoner_path, resolve_injection
from rsim_graph.evaluation.methods import METHODS, resolve
from rsim_graph.engine.gguf import model_label
from rsim_graph.strategies import load_strategies
from rsim_graph.tasks.benchmarks import ANSWER_TYPES
from rsim_graph.tasks.registry import TASK_NAMES, load_task


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring's layout kept, and every flag's default shown."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--task", default=None,
        help=f"comma-separated: {', '.join(TASK_NAMES)}, a .jsonl file or a hub dataset id (unset: arith, or custom with --data_file)",
    )
    p.add_argument("--method", default=None, help=f"comma-separated: {METHODS} (unset: zero-cot, ps+, random-planner, and rsim when a trained planner is given or bundled)")
    p.add_argument("--data_file", default=None, help="a local JSON Lines file for the task (alone: --task custom, graded with --answer_type auto)")
    p.add_argument("--question_field", default=None, help="the field holding the question (unset: the task's own, or 'question')")
    p.add_argument("--answer_field", default=None, help="the field holding the gold answer (unset: the task's own, or 'answer')")
    p.add_argument(
        "--answer_type", default=None, choices=ANSWER_TYPES,
        help="how answers are graded (unset: the task's own; auto, math-verify, for custom files and hub datasets)",
    )
    p.add_argument("--dataset_split", default=None, help="the hub split (unset: the benchmark's own, train for other hub datasets)")
    p.add_argument("--dataset_config", default=None, help="the hub dataset's config (unset: the benchmark's own, such as gsm8k's main)")
    p.add_argument("--limit", type=int, default=None, help="the first N problems (unset: all; 500 for arith)")
    p.add_argument("--output_dir", type=Path, default=Path("outputs/evals"), help="where the tables, records and plots go")
    p.add_argument("--concurrency", type=int, default=64, help="problems in flight at once")
    p.add_argument(
        "--prompt_style", choices=["auto", "plain", "instruct"], default="auto",
        help="plain for models trained without instructions (auto: plain for the bundled tiny models)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_runtime_flags(p)  # --planner is what the rsim method uses; --seed also draws the ArithWorld problems
    refuse_renamed(p)
    args = p.parse_args(argv)
    args.task = args.task or ("custom" if args.data_file else "arith")  # a data file alone is a custom task
    return args


def safe_name(name: str) -> str:
    """A task or method name as a file name (hub ids and paths hold slashes)."""
    return name.replace("/", "_").replace(":", "_")


def check_endpoint(base_url: str, api_key: str | None) -> None:
    """Fail at once, in one line, when the endpoint is unreachable (rather than with an error per problem)."""
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {api_key or 'EMPTY'}"}, timeout=10)
    except httpx.TransportError as e:
        raise InputError(f"cannot reach the reasoner at {base_url} ({type(e).__name__}); check --reasoner_base_url and that the server is up") from e


def problems_for(task: str, args: argparse.Namespace) -> list:
    return load_task(
        task, data_file=args.data_file, question_field=args.question_field, answer_field=args.answer_field,
        answer_type=args.answer_type, limit=args.limit, seed=args.seed, split=args.dataset_split, dataset_config=args.dataset_config,
    )


def run(args: argparse.Namespace) -> str:
    config = config_from(args)
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    default_methods = ["zero-cot", "ps+", "random-planner"]
    if config.planner or (BUNDLED_PLANNER / "planner.json").is_file():
        default_methods.append("rsim")
    tiny = is_bundled(config.reasoner, config.reasoner_base_url)
    style = args.prompt_style if args.prompt_style != "auto" else ("plain" if tiny else "instruct")
    methods = [resolve(m.strip(), prompt_style=style, planner_dir=config.planner) for m in (args.method.split(",") if args.method else default_methods) if m.strip()]
    problem_sets = {t: problems_for(t, args) for t in tasks}  # bad tasks and files fail before any model loads
    if config.reasoner_base_url:
        check_endpoint(config.reasoner_base_url, config.reasoner_api_key)
    library = load_strategies(config.strategies)
    reasoner = load_reasoner(
        config.reasoner, base_url=config.reasoner_base_url, model_name=config.reasoner_model, api_key=config.reasoner_api_key,
        mode=config.reasoner_mode, temperature=config.temperature, seed=config.seed, max_retries=config.max_retries,
    )
    name = model_label(reasoner_path(config.reasoner) if tiny else config.reasoner or config.reasoner_model)
    model = config.reasoner_model or (f"tiny {name} (bundled)" if tiny else name)
    injection = resolve_injection(config.injection, config.reasoner, config.reasoner_base_url, getattr(reasoner, "tokenizer", None))
    config = dataclasses.replace(config, injection=injection)
    out_dir = args.output_dir
    (out_dir / "records").mkdir(parents=True, exist_ok=True)
    results: dict = {}
    records: dict = {}
    for task, problems in problem_sets.items():
        for m in methods:
            path = out_dir / "records" / f"{safe_name(task)}__{safe_name(m.name)}.jsonl"
            summary, recs = evaluate(m, problems, reasoner, library, config, chunk=args.concurrency, records_path=path, progress=not args.no_progress)
            results.setdefault((model, m.name), {})[task] = summary
            records[(model, m.name, task)] = recs
            follow = "" if summary.follow is None else f", R_follow {summary.follow:.2f}"
            if summary.top_plan:
                follow += f", most common plan {' > '.join(summary.top_plan)} on {100 * summary.top_plan_share:.0f}% of problems"
            print(f"{task} / {m.name}: {100 * summary.accuracy:.1f}% of {summary.n} ({summary.errors} errors, {summary.seconds:.0f} s{follow})", file=sys.stderr, flush=True)
    summary_json = {"model": model, "prompt_style": style, "reasoner_mode": config.reasoner_mode if config.reasoner_base_url else None, "injection": injection, "tasks": {t: {m: asdict(results[(model, m)][t]) for (_, m) in results if t in results[(model, m)]} for t in tasks}}
    (out_dir / "summary.json").write_text(json.dumps(summary_json, indent=2))
    report = f"## Accuracy (%)\n\n{score_table(results, tasks)}\n\n## Reasoner tokens per problem (mean ± std)\n\n{token_table(results, tasks)}\n"
    (out_dir / "summary.md").write_text(report)
    pngs = plot(results, records, library.ids, out_dir)
    return report + "\nwrote " + ", ".join(str(p) for p in [out_dir / "summary.json", out_dir / "summary.md", *pngs]) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
