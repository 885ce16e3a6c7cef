"""`python -m rsim_graph solve "QUESTION"`: answer one question with strategy-injected reasoning.

With no flags it uses the bundled tiny ArithWorld models (the planner greedy). The flags are the runtime's
(`rsim_graph.config.RuntimeConfig`), shared with `python -m server` and `python -m evals`. Examples:

    python -m rsim_graph solve "What is 12*(3+4)-5?"
    python -m rsim_graph solve "..." --json --planner random
    python -m rsim_graph solve "..." --planner DIR --reasoner_base_url http://localhost:8000/v1 --reasoner_model Qwen/Qwen2.5-7B-Instruct
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rsim_graph.config import add_runtime_flags, config_from, refuse_renamed
from rsim_graph.errors import InputError, RSIMError
from rsim_graph.loading import load_runtime
from rsim_graph.runs import Reply


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rsim_graph", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("solve", help="answer one question", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("question")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the annotated steps")
    add_runtime_flags(s)
    refuse_renamed(s)
    return p.parse_args(argv)


def solve(args: argparse.Namespace) -> int:
    if not args.question.strip():  # before loading any model
        raise InputError("the question is empty: pass the problem to solve, e.g. solve \"What is 2+3?\"")
    runtime = load_runtime(config_from(args))
    reply = Reply(runtime.library.step_delimiter)
    for step, _ in reply.follow(runtime.events(args.question)):
        if not args.json:
            print(f"[{step.strategy}] {step.text}", flush=True)
    done = reply.done
    if args.json:
        trace = reply.trace()
        usage = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens, "steps": len(reply.steps)}
        print(json.dumps({"answer": done.answer, "steps": trace["steps"], "stop_reason": done.stop_reason, "usage": usage}))
    else:
        print(f"answer: {done.answer}  (stop: {done.stop_reason}, {done.completion_tokens} reasoner tokens)")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # tiny local checkpoints load instantly; a bar would only clutter errors
    args = parse_args(argv)
    try:
        return solve(args)
    except RSIMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
