"""Benchmarks that print ratios measured in one run (never asserted in tests).

    python -m evals.bench rollout [--questions 32] [--planner tiny] [--reasoner smollm2] [--contended]
    python -m evals.bench server [--requests 64] [--concurrency 1 8 32]   (see evals/bench_server.py)
    python -m evals.bench drops [--drops 1000]                           (see evals/bench_drops.py)

The training benchmark (a MARL step against TRL's GRPOTrainer step) is `python -m trainers.bench`.

rollout:
  (a) trajectories/s for N concurrent questions (one batched graph run) vs the same N one after another;
  (b) reasoner tokens/s in step-wise rollouts vs one `model.generate` call producing the same number of
      tokens for the same batch, with and without reuse of each trajectory's prefix cache.
`--contended` measures both quiet and beside a fixed CPU load (one busy process per core by default).
`--continuous` decodes with continuous batching (rows join and leave between tokens) instead of static batches.
Both runs in (a) are greedy, so they produce the same trajectories; the script checks that. Every
graph is warmed up first, and every timing is the median of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from evals import bench_drops, bench_server
from rsim_graph.engine.batching import THREADS
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import load_planner, reasoner_path
from rsim_graph.reasoners.hf import HFReasoner, load_causal_lm
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import ArithWorld


def _timed(fn, repeats: int = 1):
    """(last result, median seconds over `repeats` runs)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def bench_rollout(args: argparse.Namespace) -> dict:
    """Print and return the rollout figures: (a) concurrent vs sequential, (b) step-wise vs one generate."""
    torch.set_num_threads(args.threads)
    THREADS.adaptive = not args.fixed_threads
    switches = THREADS.switches
    library = StrategyLibrary.default()
    tokenizer, model = load_causal_lm(reasoner_path(args.reasoner))
    questions = [p.question for p in ArithWorld(split="test").problems(args.questions)]

    def graph(max_cached: int = 4096):
        reasoner = HFReasoner(model, tokenizer, temperature=0.0, max_cached=max_cached, continuous=args.continuous)
        planner = load_planner(args.planner, library, greedy=True, seed=0)
        g = build_graph(planner, reasoner, library, max_steps=args.max_reasoning_steps, max_step_tokens=args.max_step_tokens)
        run_batch(g, questions[:4])  # warm-up: the first run of a graph pays one-off setup
        reasoner.batcher.batch_sizes.clear()
        return g, reasoner

    g, _ = graph()
    seq, t_seq = _timed(lambda: [g.invoke({"question": q}) for q in questions], args.repeats)
    g, reasoner = graph()
    par, t_par = _timed(lambda: run_batch(g, questions), args.repeats)
    same = [o["answer"] for o in seq] == [o["answer"] for o in par]
    tokens = sum(o["usage"]["reasoner_tokens"] for o in par)
    sizes = reasoner.batcher.batch_sizes
    print(f"(a) {len(questions)} questions: sequential {len(questions) / t_seq:.2f} traj/s, "
          f"concurrent {len(questions) / t_par:.2f} traj/s -> {t_seq / t_par:.1f}x ({'continuous' if args.continuous else 'static'} batches; goal >= 8x{', >= 3x contended' if args.load else ''}); "
          f"same answers: {same}; mean {'rows per decode step' if args.continuous else 'requests per reasoner batch'} {sum(sizes) / len(sizes):.1f}", flush=True)

    g_nc, _ = graph(max_cached=0)
    _, t_nocache = _timed(lambda: run_batch(g_nc, questions), args.repeats)
    per_row = max(1, tokens // len(questions))
    batch = tokenizer.apply_chat_template(
        [[{"role": "user", "content": q}] for q in questions], add_generation_prompt=True, tokenize=False
    )
    tokenizer.padding_side = "left"
    enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out, t_gen = _timed(
            lambda: model.generate(**enc, max_new_tokens=per_row, min_new_tokens=per_row, do_sample=False, pad_token_id=tokenizer.pad_token_id),
            args.repeats,
        )
    gen_tokens = (out.shape[1] - enc["input_ids"].shape[1]) * len(questions)
    rate, rate_nc, rate_gen = tokens / t_par, tokens / t_nocache, gen_tokens / t_gen
    print(f"(b) step-wise rollout {rate:.0f} tok/s ({tokens} tokens), without prefix-cache reuse {rate_nc:.0f} tok/s, "
          f"one model.generate {rate_gen:.0f} tok/s ({gen_tokens} tokens) -> {rate / rate_gen:.2f}x (goal >= 0.8x{', >= 0.5x contended' if args.load else ''}); "
          f"cache reuse gains {rate / rate_nc:.2f}x; thread policy: {'fixed' if args.fixed_threads else f'{THREADS.switches - switches} switches'}", flush=True)
    return {"a": t_seq / t_par, "b": rate / rate_gen, "traj_s": len(questions) / t_par, "tok_s": rate}


def spin(stop, parent: int) -> None:
    """A CPU-bound loop until `stop` is set (or the benchmark is gone): one unit of the fixed load `--contended` runs beside it."""
    x = 0
    while not stop.is_set() and os.getppid() == parent:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def torch_load(stop, parent: int) -> None:
    """Matrix products on torch's default threads (one per core) until `stop` is set (or the benchmark is gone):
    what a busy model server beside the benchmark does, with an OpenMP team of its own."""
    a = torch.randn(384, 384)
    while not stop.is_set() and os.getppid() == parent:
        for _ in range(20):
            a = torch.tanh(a @ a)


def bench_contended(args: argparse.Namespace) -> None:
    """The rollout figures on a quiet machine, then beside `--load` busy processes, measured in one run."""
    import multiprocessing as mp

    args.load = 0
    print("quiet:", flush=True)
    quiet = bench_rollout(args)
    args.load = args.load_processes
    stop = mp.get_context("spawn").Event()
    target = torch_load if args.load_kind == "torch" else spin
    procs = [mp.get_context("spawn").Process(target=target, args=(stop, os.getpid()), daemon=True) for _ in range(args.load)]
    for proc in procs:
        proc.start()
    try:
        print(f"contended ({args.load} busy {args.load_kind} processes beside it):", flush=True)
        busy = bench_rollout(args)
    finally:
        stop.set()
        for proc in procs:
            proc.join()
    cores = os.cpu_count() or 1
    threads = args.load * (cores if args.load_kind == "torch" else 1)  # busy threads: a torch process runs one per core
    print(f"contended / quiet: trajectories/s {busy['traj_s'] / quiet['traj_s']:.2f}x, step-wise tok/s {busy['tok_s'] / quiet['tok_s']:.2f}x; "
          f"the load itself leaves a fair share of {cores / (cores + threads):.2f}x ({cores} cores, {threads} busy threads)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        command = " ".join(["python -m trainers.bench", *argv[1:]])  # evals builds on the runtime, never on the trainers
        print(f"error: the training benchmark moved to trainers; run `{command}`", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True)
    r = sub.add_parser("rollout", help="batched vs sequential rollouts; step-wise vs one generate call", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--questions", type=int, default=32, help="held-out ArithWorld questions, one trajectory each")
    r.add_argument("--reasoner", default="tiny", help="the reasoner: a model directory, tiny, smollm2, a .gguf file")
    r.add_argument("--planner", default="tiny", help="a planner spec, as for solve (tiny: the bundled learned planner)")
    r.add_argument("--max_reasoning_steps", type=int, default=8, help="reasoning steps per trajectory")
    r.add_argument("--max_step_tokens", type=int, default=64, help="reasoner tokens per step")
    r.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    r.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (the median is reported)")
    r.add_argument("--fixed_threads", action="store_true", help="keep --threads under contention (no adaptive thread policy)")
    r.add_argument("--continuous", action="store_true", help="continuous batching (a slot cache) instead of static batches")
    r.add_argument("--contended", action="store_true", help="measure quiet, then beside --load_processes busy processes")
    r.add_argument("--load_processes", type=int, default=os.cpu_count() or 2, help="busy processes of the --contended load")
    r.add_argument("--load_kind", choices=("spin", "torch"), default="spin",
                   help="the --contended load: spin (a Python loop, one core each) or torch (matrix products on all cores, as a busy server)")
    bench_server.add_parser(sub)
    bench_drops.add_parser(sub)
    args = p.parse_args(argv)
    if args.bench == "server":
        print(bench_server.bench_server(args))
    elif args.bench == "drops":
        print(bench_drops.bench_drops(args))
    elif args.contended:
        bench_contended(args)
    else:
        args.load = 0
        bench_rollout(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
