"""`python -m trainers.bench`: seconds per MARL optimizer step against TRL's `GRPOTrainer` step (never asserted in tests).

    python -m trainers.bench [--steps 4] [--batch 16] [--generations 8]

Both trainers run on the same reasoner, batch and token budget: GRPO is made to generate exactly as many
tokens per completion as the MARL rollouts averaged (injected strategy text included), so both train on
sequences of one length. Each time is the median over `--steps` steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from rsim_graph.loading import ASSETS, BUNDLED_REASONER
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.scoring.rewards import accuracy_reward, format_reward
from trainers.common import load_model
from trainers.data import arith_dataset
from trainers.marl_config import MARLConfig
from trainers.marl_trainer import MARLTrainer


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (rollout, loss, backward, update)."""

    def __init__(self):
        self.times: list[float] = []
        self.t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.t0)


def bench_train(args: argparse.Namespace) -> str:
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
        timer = StepTimer()
        marl = MARLTrainer(model, planner, cfg, train_dataset=data, processing_class=tokenizer, callbacks=[timer])
        marl.train()
        t_marl = statistics.median(timer.times[1:])  # the first step pays one-off setup
        lengths = [h["completions/mean_length"] for h in marl.state.log_history if "completions/mean_length" in h][1:]
        n_tokens = max(1, round(statistics.fmean(lengths)))

        tokenizer, model = load_model(args.reasoner)
        grpo_data = data.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]})
        cfg = GRPOConfig(output_dir=tmp, max_completion_length=n_tokens, generation_kwargs={"min_new_tokens": n_tokens}, **common)
        timer = StepTimer()
        grpo = GRPOTrainer(
            model=model, reward_funcs=[accuracy_reward, format_reward], args=cfg, train_dataset=grpo_data, processing_class=tokenizer,
            callbacks=[timer],
        )
        grpo.train()
        t_grpo = statistics.median(timer.times[1:])
    return (
        f"train: {args.batch} completions per step, {n_tokens} tokens each (MARL mean, injected text included); "
        f"MARL {t_marl:.2f} s/step vs TRL GRPOTrainer {t_grpo:.2f} s/step -> {t_marl / t_grpo:.2f}x (goal <= 1.3x); "
        f"medians of {args.steps} steps after one warm-up step"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainers.bench", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=4, help="optimizer steps timed per trainer (after one warm-up step)")
    p.add_argument("--batch", type=int, default=16, help="completions per step (prompts x generations)")
    p.add_argument("--generations", type=int, default=8, help="completions per prompt")
    p.add_argument("--max_tokens", type=int, default=512, help="token budget per completion")
    p.add_argument("--reasoner", default=str(BUNDLED_REASONER), help="the reasoner model directory")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args(argv)


if __name__ == "__main__":
    from trainers.cli import print_report

    sys.exit(print_report(lambda: bench_train(parse_args())))
