"""Launched by `tests/test_marl.py` under `accelerate launch` on two CPU processes: two MARL steps, then
every rank saves the planner it holds, so the test can compare them tensor by tensor.

    python -m accelerate.commands.launch --num_processes 2 tests/two_ranks.py REASONER_DIR PLANNER_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rsim_graph.planners.policy import PolicyPlanner
from trainers.common import load_model
from trainers.data import arith_dataset
from trainers.marl_config import MARLConfig
from trainers.marl_trainer import MARLTrainer


def main(reasoner_dir: str, planner_dir: str, out: str) -> None:
    tokenizer, model = load_model(reasoner_dir)
    planner = PolicyPlanner.from_pretrained(planner_dir, seed=0)
    args = MARLConfig(
        output_dir=out, per_device_train_batch_size=4, num_generations=2, max_reasoning_steps=3, max_step_tokens=8,
        max_completion_length=32, max_steps=2, learning_rate=1e-2, planner_learning_rate=1e-2, temperature=1.0,
        save_strategy="no", report_to="none", bf16=False, seed=0, disable_tqdm=True, use_cpu=True,
    )
    trainer = MARLTrainer(model, planner, args, train_dataset=arith_dataset(32), processing_class=tokenizer)
    trainer.train()
    torch.save(planner.state_dict(), Path(out) / f"planner_rank{trainer.accelerator.process_index}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
