"""`python -m trainers.grpo`: plain single-agent GRPO on the reasoner, the paper's baseline (no planner).

    python -m trainers.grpo                                   # ArithWorld, bundled tiny reasoner
    python -m trainers.grpo --max_train_seconds 1300          # equal wall-clock time with the MARL run

Same rewards as the reasoner's in rSIM minus R_follow (there is nothing injected to follow): R_acc + R_format.
Generation is TRL's own `model.generate`, with the prompt in the reasoner's chat template.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer, ModelConfig

from rsim_graph.scoring.rewards import accuracy_reward, format_reward
from rsim_graph.strategies import StrategyLibrary
from trainers.cli import run_script
from trainers.common import (
    TaskArguments,
    TimeBudget,
    apply_lora,
    eval_config,
    evaluate_arith,
    load_model,
)
from trainers.data import task_dataset

logger = logging.getLogger(__name__)


@dataclass
class GRPOScriptArguments(TaskArguments):
    system_prompt: str | None = field(
        default=None, metadata={"help": "A system message before each question (the evals' ZeroCoT prompt for instruct models; none for the tiny ones)."}
    )
    lora_last_layers: int = field(default=0, metadata={"help": "With --use_peft: LoRA on the reasoner's last N decoder layers only (0: all)."})


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> str:
    set_seed(training_args.seed)
    tokenizer, model = load_model(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    model = apply_lora(model, model_args, script_args.lora_last_layers)
    dataset = task_dataset(script_args, n=script_args.train_size, seed=training_args.seed)
    system = [{"role": "system", "content": script_args.system_prompt}] if script_args.system_prompt else []
    dataset = dataset.map(lambda row: {"prompt": [*system, {"role": "user", "content": row["prompt"]}]})
    trainer = GRPOTrainer(
        model=model, reward_funcs=[accuracy_reward, format_reward], args=training_args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[TimeBudget(script_args.max_train_seconds)] if script_args.max_train_seconds else None,
    )
    arith = script_args.task == "arith" and script_args.eval_limit > 0 and trainer.accelerator.is_main_process
    library = StrategyLibrary.default()
    before = evaluate_arith({"ZeroCoT": "zero-cot"}, model, tokenizer, library, script_args.eval_limit, eval_config(training_args.max_completion_length)) if arith else {}
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    out = Path(training_args.output_dir)
    trainer.save_model(str(out / "reasoner"))
    if not (trainer.accelerator.is_main_process and arith):
        return ""
    after = evaluate_arith({"ZeroCoT": "zero-cot"}, model, tokenizer, library, script_args.eval_limit, eval_config(training_args.max_completion_length))
    record = {"seed": training_args.seed, "steps": trainer.state.global_step, "train_seconds": round(train_seconds, 1), "before": before, "after": after}
    (out / "results.json").write_text(json.dumps(record, indent=2))
    b, a = before["ZeroCoT"]["accuracy"], after["ZeroCoT"]["accuracy"]
    return f"| Method | before | after |\n|---|---|---|\n| GRPO reasoner, ZeroCoT | {100 * b:.1f}% | {100 * a:.1f}% |"


def cli(argv: list[str] | None = None) -> int:
    return run_script((GRPOScriptArguments, GRPOConfig, ModelConfig), main, "grpo_arith_tiny.yaml", argv)


if __name__ == "__main__":
    sys.exit(cli())
