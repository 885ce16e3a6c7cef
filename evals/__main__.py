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
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from evals.report import plot, score_table, token_table
from rsim_graph.errors import InputError, RSIMError
from rsim_graph.evaluation import evaluate
from rsim_graph.loading import ASSETS, BUNDLED_PLANNER, BUNDLED_REASONER, load_reasoner, resolve_injection
from rsim_graph.methods import METHODS, resolve
from rsim_graph.models import model_label
from rsim_graph.strategies import INJECTIONS, load_strategies
from rsim_graph.tasks.benchmarks import ANSWER_TYPES
from rsim_graph.tasks.registry import TASK_NAMES, load_task


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--task", default=None,
        help=f"comma-separated: {', '.join(TASK_NAMES)}, a .jsonl file or a hub dataset id (default: arith; custom with --data_file)",
    )
    p.add_argument("--method", default=None, help=f"comma-separated: {METHODS} (default: zero-cot, ps+, random-planner, and rsim when a trained planner is given or bundled)")
    p.add_argument("--data_file", default=None, help="a local JSON Lines file for the task (alone: --task custom, graded with --answer_type auto)")
    p.add_argument("--question_field", default=None, help="the field holding the question (default: the task's own, or 'question')")
    p.add_argument("--answer_field", default=None, help="the field holding the gold answer (default: the task's own, or 'answer')")
    p.add_argument(
        "--answer_type", default=None, choices=ANSWER_TYPES,
        help="how answers are graded (default: the task's own; auto, math-verify, for custom files and hub datasets)",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N problems (default: all; 500 for arith)")
    p.add_argument("--seed", type=int, default=0, help="which held-out problems arith draws; seeds the random planner")
    p.add_argument("--output_dir", type=Path, default=Path("outputs/evals"))
    p.add_argument("--planner", default=None, help="the planner directory that `rsim` uses (default: the bundled trained planner)")
    p.add_argument("--planner_base_url", default=None, help="OpenAI-compatible server for prompt-planner:<model> (default: --reasoner_base_url)")
    p.add_argument("--reasoner", default=None, help="local model directory, hub id, or vllm:<model> (default: the bundled pretrained tiny reasoner)")
    p.add_argument("--reasoner_base_url", default=None, help="OpenAI-compatible endpoint (vLLM, SGLang, Ollama) for the reasoner")
    p.add_argument("--reasoner_model", default=None, help="model name at --reasoner_base_url")
    p.add_argument(
        "--reasoner_mode", choices=("prefill", "turns"), default="prefill",
        help="how a chat upstream sees injected strategies: continuing the assistant message, or a user turn per step",
    )
    p.add_argument(
        "--injection", choices=("auto", *INJECTIONS), default="auto",
        help="how the reasoner sees a strategy: prefilled in its turn, plus a system message stating the step protocol, or as numbered "
        "step headers (auto: prefill for the bundled tiny models, system for others)",
    )
    p.add_argument("--api_key", default=None)
    p.add_argument("--concurrency", type=int, default=64, help="problems in flight at once")
    p.add_argument("--max_retries", type=int, default=2, help="retries of a failed call to an OpenAI-compatible endpoint")
    p.add_argument("--prompt_style", choices=["auto", "plain", "instruct"], default="auto", help="plain for models trained without instructions (auto: plain for the bundled models)")
    p.add_argument("--strategies", default=None)
    p.add_argument("--max_steps", type=int, default=12)
    p.add_argument("--max_step_tokens", type=int, default=96)
    p.add_argument("--max_total_tokens", type=int, default=1024)
    p.add_argument("--no_progress", action="store_true")
    args = p.parse_args(argv)
    args.task = args.task or ("custom" if args.data_file else "arith")  # a data file alone is a custom task
    return args


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
        answer_type=args.answer_type, limit=args.limit, seed=args.seed,
    )


def run(args: argparse.Namespace) -> str:
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    default_methods = ["zero-cot", "ps+", "random-planner"]
    if args.planner or (BUNDLED_PLANNER / "planner.json").is_file():
        default_methods.append("rsim")
    bundled = not (args.reasoner or args.reasoner_base_url) or Path(args.reasoner or "").resolve().is_relative_to(ASSETS)
    style = args.prompt_style if args.prompt_style != "auto" else ("plain" if bundled else "instruct")
    methods = [resolve(m.strip(), prompt_style=style, planner_dir=args.planner) for m in (args.method.split(",") if args.method else default_methods) if m.strip()]
    problem_sets = {t: problems_for(t, args) for t in tasks}  # bad tasks and files fail before any model loads
    if args.reasoner_base_url:
        check_endpoint(args.reasoner_base_url, args.api_key)
    library = load_strategies(args.strategies)
    reasoner = load_reasoner(
        args.reasoner or (None if args.reasoner_base_url else str(BUNDLED_REASONER)),
        base_url=args.reasoner_base_url, model_name=args.reasoner_model, api_key=args.api_key, mode=args.reasoner_mode,
        temperature=0.0, seed=args.seed, max_retries=args.max_retries,
    )
    name = model_label(args.reasoner or str(BUNDLED_REASONER))
    model = args.reasoner_model or (f"tiny {name} (bundled)" if bundled else name)
    injection = resolve_injection(args.injection, args.reasoner, args.reasoner_base_url)
    out_dir = args.output_dir
    (out_dir / "records").mkdir(parents=True, exist_ok=True)
    results: dict = {}
    records: dict = {}
    for task, problems in problem_sets.items():
        for m in methods:
            path = out_dir / "records" / f"{task}__{m.name.replace('/', '_').replace(':', '_')}.jsonl"
            summary, recs = evaluate(
                m, problems, reasoner, library, max_steps=args.max_steps, max_step_tokens=args.max_step_tokens,
                max_total_tokens=args.max_total_tokens, injection=injection, seed=args.seed, chunk=args.concurrency, records_path=path,
                progress=not args.no_progress, planner_base_url=args.planner_base_url or args.reasoner_base_url, api_key=args.api_key,
            )
            results.setdefault((model, m.name), {})[task] = summary
            records[(model, m.name, task)] = recs
            follow = "" if summary.follow is None else f", R_follow {summary.follow:.2f}"
            print(f"{task} / {m.name}: {100 * summary.accuracy:.1f}% of {summary.n} ({summary.errors} errors, {summary.seconds:.0f} s{follow})", file=sys.stderr, flush=True)
    summary_json = {"model": model, "prompt_style": style, "reasoner_mode": args.reasoner_mode if args.reasoner_base_url else None, "injection": injection, "tasks": {t: {m: asdict(results[(model, m)][t]) for (_, m) in results if t in results[(model, m)]} for t in tasks}}
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
    try:
        print(run(args), end="")
    except RSIMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
