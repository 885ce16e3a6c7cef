"""`python -m evals`: compare methods on ArithWorld's held-out problems with the bundled tiny models.

    python -m evals                                   # ZeroCoT, PS+, random planner, heuristic planner on 500 problems
    python -m evals --method zero-cot,heuristic --limit 100
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from evals.runner import evaluate, markdown_table
from rsim_graph.errors import RSIMError
from rsim_graph.loading import BUNDLED_REASONER, load_reasoner
from rsim_graph.strategies import load_strategies
from rsim_graph.tasks.arith import ArithWorld

DEFAULT_METHODS = "zero-cot,ps+,random-planner,heuristic"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="arith", choices=["arith"])
    p.add_argument("--method", default=DEFAULT_METHODS, help="comma-separated: zero-cot, ps+, random-planner, heuristic, rsim (the bundled trained planner), rsim:<planner dir>")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="which held-out ArithWorld problems to draw")
    p.add_argument("--reasoner", default=None, help="model directory or id (default: the bundled tiny reasoner)")
    p.add_argument("--strategies", default=None)
    p.add_argument("--max_steps", type=int, default=12)
    p.add_argument("--max_step_tokens", type=int, default=96)
    p.add_argument("--max_total_tokens", type=int, default=1024)
    p.add_argument("--output_dir", type=Path, default=Path("outputs/evals"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        library = load_strategies(args.strategies)
        # Baselines run on the pretrained reasoner unless told otherwise, so every row shares one reasoner.
        reasoner = load_reasoner(args.reasoner or str(BUNDLED_REASONER), temperature=0.0, seed=args.seed)
        problems = ArithWorld(split="test", seed=args.seed).problems(args.limit)
        summaries = []
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for method in [m.strip() for m in args.method.split(",") if m.strip()]:
            summary, records = evaluate(
                method, problems, reasoner, library,
                max_steps=args.max_steps, max_step_tokens=args.max_step_tokens, max_total_tokens=args.max_total_tokens, seed=args.seed,
            )
            summaries.append(summary)
            name = method.replace("/", "_").replace(":", "_")
            with open(args.output_dir / f"{args.task}_{name}.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            print(f"{method}: accuracy {100 * summary.accuracy:.1f}% on {summary.n} ({summary.seconds:.0f}s)", flush=True)
        (args.output_dir / "summary.json").write_text(json.dumps({args.task: [asdict(s) for s in summaries]}, indent=2))
        print(markdown_table(summaries))
    except RSIMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
