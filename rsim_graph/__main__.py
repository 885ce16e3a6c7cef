"""`python -m rsim_graph solve "QUESTION"`: answer one question with strategy-injected reasoning.

With no flags it uses the bundled tiny ArithWorld models. Examples:

    python -m rsim_graph solve "What is 12*(3+4)-5?"
    python -m rsim_graph solve "..." --json --planner random
    python -m rsim_graph solve "..." --planner DIR --reasoner_base_url http://localhost:8000/v1 --reasoner_model Qwen/Qwen2.5-7B-Instruct
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rsim_graph.errors import InputError, RSIMError
from rsim_graph.loading import PLANNER_SPECS, load_runtime
from rsim_graph.strategies import INJECTIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rsim_graph", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("solve", help="answer one question")
    s.add_argument("question")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the annotated steps")
    s.add_argument("--planner", default=None, help=f"{PLANNER_SPECS} (default: the bundled planner)")
    s.add_argument("--planner_base_url", default=None, help="OpenAI-compatible server for a prompt:<model> planner")
    s.add_argument("--greedy_planner", action="store_true", help="take the planner's most likely strategy")
    s.add_argument("--reasoner", default=None, help="local model directory, hub id, or vllm:<model> (default: bundled)")
    s.add_argument("--reasoner_base_url", default=None, help="OpenAI-compatible server (vLLM, SGLang, Ollama) for the reasoner")
    s.add_argument("--reasoner_model", default=None, help="model name at --reasoner_base_url")
    s.add_argument("--reasoner_mode", choices=["prefill", "turns"], default="prefill")
    s.add_argument("--injection", choices=("auto", *INJECTIONS), default="auto", help="how the reasoner sees a strategy (auto: prefill for the bundled tiny models, system for others; README: Injection formats)")
    s.add_argument("--api_key", default=None, help="key for the OpenAI-compatible server(s)")
    s.add_argument("--strategies", default=None, help="strategy library YAML (default: the nine built-in strategies)")
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max_steps", type=int, default=12)
    s.add_argument("--max_step_tokens", type=int, default=256)
    s.add_argument("--max_total_tokens", type=int, default=2048)
    return p.parse_args(argv)


def solve(args: argparse.Namespace) -> int:
    if not args.question.strip():  # before loading any model
        raise InputError("the question is empty: pass the problem to solve, e.g. solve \"What is 2+3?\"")
    graph, _, _ = load_runtime(
        planner=args.planner,
        reasoner=args.reasoner,
        strategies=args.strategies,
        greedy=args.greedy_planner,
        seed=args.seed,
        planner_base_url=args.planner_base_url,
        base_url=args.reasoner_base_url,
        model_name=args.reasoner_model,
        api_key=args.api_key,
        mode=args.reasoner_mode,
        temperature=args.temperature,
        max_steps=args.max_steps,
        max_step_tokens=args.max_step_tokens,
        max_total_tokens=args.max_total_tokens,
        injection=args.injection,
    )
    final = None
    for mode, chunk in graph.stream({"question": args.question}, stream_mode=["custom", "values"]):
        if mode == "values":
            final = chunk
        elif not args.json and chunk["event"] == "step":
            print(f"[{chunk['strategy']}] {chunk['text']}", flush=True)
    if args.json:
        out = {
            "answer": final["answer"],
            "steps": [{"strategy": s["strategy"], "text": s["text"]} for s in final["steps"]],
            "stop_reason": final["stop_reason"],
            "usage": final["usage"],
        }
        print(json.dumps(out))
    else:
        print(f"answer: {final['answer']}  (stop: {final['stop_reason']}, {final['usage']['reasoner_tokens']} reasoner tokens)")
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
