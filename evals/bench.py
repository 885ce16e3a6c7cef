"""Benchmarks that print ratios measured in one run (never asserted in tests).

    python -m evals.bench rollout [--questions 32] [--planner heuristic]
    python -m evals.bench train [--steps 4] [--batch 16] [--generations 8]
    python -m evals.bench server [--requests 64] [--concurrency 1 8 32]   (see evals/bench_server.py)

rollout:
  (a) trajectories/s for N concurrent questions (one batched graph run) vs the same N one after another;
  (b) reasoner tokens/s in step-wise rollouts vs one `model.generate` call producing the same number of
      tokens for the same batch, with and without reuse of each trajectory's prefix cache.
train:
  seconds per optimizer step of the MARL trainer against TRL's own `GRPOTrainer` on the same reasoner,
  batch and token budget: GRPO is made to generate exactly as many tokens per completion as the MARL
  rollouts averaged (injected strategy text included), so both train on sequences of one length.
Both runs in (a) are greedy, so they produce the same trajectories; the script checks that. Every\ngraph is warmed up first, and batched timings are the median of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from evals import bench_server
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import load_planner
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


def bench_rollout(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    library = StrategyLibrary.default()
    tokenizer, model = load_causal_lm(args.reasoner)
    questions = [p.question for p in ArithWorld(split="test").problems(args.questions)]

    def graph(max_cached: int = 4096):
        reasoner = HFReasoner(model, tokenizer, temperature=0.0, max_cached=max_cached)
        planner = load_planner(args.planner, library, greedy=True, seed=0)
        g = build_graph(planner, reasoner, library, max_steps=args.max_steps, max_step_tokens=args.max_step_tokens)
        run_batch(g, questions[:4])  # warm-up: the first run of a graph pays one-off setup
        reasoner.batcher.batch_sizes.clear()
        return g, reasoner

    g, _ = graph()
    seq, t_seq = _timed(lambda: [g.invoke({"question": q}) for q in questions])
    g, reasoner = graph()
    par, t_par = _timed(lambda: run_batch(g, questions), args.repeats)
    same = [o["answer"] for o in seq] == [o["answer"] for o in par]
    tokens = sum(o["usage"]["reasoner_tokens"] for o in par)
    sizes = reasoner.batcher.batch_sizes
    print(f"(a) {len(questions)} questions: sequential {len(questions) / t_seq:.2f} traj/s, "
          f"concurrent {len(questions) / t_par:.2f} traj/s -> {t_seq / t_par:.1f}x (goal >= 8x); "
          f"same answers: {same}; mean requests per reasoner batch {sum(sizes) / len(sizes):.1f}")

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
          f"one model.generate {rate_gen:.0f} tok/s ({gen_tokens} tokens) -> {rate / rate_gen:.2f}x (goal >= 0.8x); "
          f"cache reuse gains {rate / rate_nc:.2f}x")


class _StepTimer:
    """Wall time of every optimizer step (rollout, loss, backward, update)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.times.append(time.perf_counter() - timer.t0)

        self.times: list[float] = []
        self.callback = Callback()


def bench_train(args: argparse.Namespace) -> None:
    import tempfile

    from trl import GRPOConfig, GRPOTrainer

    from rsim_graph.loading import ASSETS
    from rsim_graph.planners.policy import PolicyPlanner
    from rsim_graph.rewards import accuracy_reward, format_reward
    from trainers.common import load_model
    from trainers.data import arith_dataset
    from trainers.marl_config import MARLConfig
    from trainers.marl_trainer import MARLTrainer

    torch.set_num_threads(args.threads)
    data = arith_dataset(args.batch * args.steps * 4)
    common = dict(
        per_device_train_batch_size=args.batch, num_generations=args.generations, gradient_accumulation_steps=1,
        max_steps=args.steps + 1, learning_rate=1e-5, temperature=0.3, logging_steps=1, save_strategy="no",
        report_to="none", bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, model = load_model(args.reasoner)
        planner = PolicyPlanner.from_pretrained(ASSETS / "planner-init", seed=0)
        cfg = MARLConfig(output_dir=tmp, max_completion_length=args.max_tokens, max_reasoning_steps=8, max_step_tokens=64, **common)
        timer = _StepTimer()
        marl = MARLTrainer(model, planner, cfg, train_dataset=data, processing_class=tokenizer, callbacks=[timer.callback])
        marl.train()
        t_marl = statistics.median(timer.times[1:])  # the first step pays one-off setup
        lengths = [h["completions/mean_length"] for h in marl.state.log_history if "completions/mean_length" in h][1:]
        n_tokens = max(1, round(statistics.fmean(lengths)))

        tokenizer, model = load_model(args.reasoner)
        grpo_data = data.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]})
        cfg = GRPOConfig(output_dir=tmp, max_completion_length=n_tokens, generation_kwargs={"min_new_tokens": n_tokens}, **common)
        timer = _StepTimer()
        grpo = GRPOTrainer(model=model, reward_funcs=[accuracy_reward, format_reward], args=cfg, train_dataset=grpo_data, processing_class=tokenizer, callbacks=[timer.callback])
        grpo.train()
        t_grpo = statistics.median(timer.times[1:])
    print(f"train: {args.batch} completions per step, {n_tokens} tokens each (MARL mean, injected text included); "
          f"MARL {t_marl:.2f} s/step vs TRL GRPOTrainer {t_grpo:.2f} s/step -> {t_marl / t_grpo:.2f}x (goal <= 1.3x); "
          f"medians of {args.steps} steps after one warm-up step")


def main(argv: list[str] | None = None) -> None:
    from rsim_graph.loading import BUNDLED_REASONER

    p = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="bench", required=True)
    r = sub.add_parser("rollout", help="batched vs sequential rollouts; step-wise vs one generate call")
    r.add_argument("--questions", type=int, default=32)
    r.add_argument("--reasoner", default=str(BUNDLED_REASONER))
    r.add_argument("--planner", default="heuristic")
    r.add_argument("--max_steps", type=int, default=8)
    r.add_argument("--max_step_tokens", type=int, default=64)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (the median is reported)")
    t = sub.add_parser("train", help="seconds per MARL step vs TRL's GRPOTrainer step")
    t.add_argument("--steps", type=int, default=4)
    t.add_argument("--batch", type=int, default=16, help="completions per step (prompts x generations)")
    t.add_argument("--generations", type=int, default=8)
    t.add_argument("--max_tokens", type=int, default=512, help="token budget per completion")
    t.add_argument("--reasoner", default=str(BUNDLED_REASONER))
    t.add_argument("--threads", type=int, default=2)
    bench_server.add_parser(sub)
    args = p.parse_args(argv)
    if args.bench == "server":
        print(bench_server.bench_server(args))
    else:
        {"rollout": bench_rollout, "train": bench_train}[args.bench](args)


if __name__ == "__main__":
    main()
