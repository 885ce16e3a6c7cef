"""`python -m trainers.marl`: rSIM's leader-follower GRPO (arXiv 2512.08300, Sec. 3.4).

    python -m trainers.marl                                          # ArithWorld, bundled tiny models (the main job)
    python -m trainers.marl --config trainers/recipes/qwen2.5-0.5b_planner-0.5b_math.yaml
    python -m trainers.marl --max_steps 20 --output_dir /tmp/run      # flags override the recipe
    python -m trainers.marl --resume_from_checkpoint outputs/marl/checkpoint-40
    accelerate launch --config_file trainers/recipes/accelerate/multi_cpu.yaml -m trainers.marl

With no `--config`, the default recipe `trainers/recipes/arith_tiny.yaml` is used. The run ends with a
before/after accuracy table on held-out ArithWorld problems, PNG plots, and the trained planner in
`<output_dir>/planner` (load it with `python -m rsim_graph solve --planner DIR`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig

from rsim_graph.loading import ASSETS, BUNDLED_REASONER_B, bundled
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.strategies import load_strategies
from trainers.cli import run_script
from trainers.common import (
    TaskArguments,
    TimeBudget,
    evaluate_arith,
    load_model,
)
from trainers.data import load_task
from trainers.marl_config import MARLConfig
from trainers.marl_trainer import MARLTrainer, check_checkpoint
from trainers.plots import plot_training

logger = logging.getLogger(__name__)


@dataclass
class MARLScriptArguments(TaskArguments):
    planner: str | None = field(
        default=None,
        metadata={"help": "Planner checkpoint to start from, or a language model (path or hub id) to put a fresh head on (default: the bundled planner-init)."},
    )
    strategies: str | None = field(default=None, metadata={"help": "Strategy library YAML (default: the nine built-in)."})
    transfer_reasoner: str | None = field(
        default=None, metadata={"help": "A second reasoner for the plug-in row of the table (arith default: bundled reasoner-b)."}
    )


def evaluation(script_args, model, tokenizer, library, planner_dir: str, transfer: bool) -> dict:
    methods = {"ZeroCoT": "zero-cot", "random planner": "random-planner", "rSIM planner": f"rsim:{planner_dir}"}
    rows = evaluate_arith(methods, model, tokenizer, library, script_args.eval_limit)
    if transfer:
        from rsim_graph.reasoners.hf import HFReasoner

        other = HFReasoner.from_pretrained(script_args.transfer_reasoner or str(bundled(BUNDLED_REASONER_B)), temperature=0.0)
        plug = evaluate_arith({"ZeroCoT": "zero-cot", "rSIM planner": f"rsim:{planner_dir}"}, None, None, library, script_args.eval_limit, reasoner=other)
        rows.update({f"{k} (reasoner-b)": v for k, v in plug.items()})
    return rows


def table(before: dict, after: dict) -> str:
    lines = ["| Method | before | after | distinct strategies after |", "|---|---|---|---|"]
    for label, a in after.items():
        b = before.get(label, {}).get("accuracy")
        lines.append(f"| {label} | {'-' if b is None else f'{100 * b:.1f}%'} | {100 * a['accuracy']:.1f}% | {a['distinct_strategies']} |")
    return "\n".join(lines)


def main(script_args: MARLScriptArguments, training_args: MARLConfig, model_args: ModelConfig) -> str:
    set_seed(training_args.seed)
    library = load_strategies(script_args.strategies)
    planner_dir = script_args.planner or str(bundled(ASSETS / "planner-init"))
    if (Path(planner_dir) / "planner.json").is_file():
        planner = PolicyPlanner.from_pretrained(planner_dir, seed=training_args.seed)
    else:
        planner = PolicyPlanner.from_backbone(planner_dir, library, seed=training_args.seed)
    if planner.library.ids != library.ids:
        planner.grow(library)  # continual learning: new strategies get fresh head rows, old rows are kept
    tokenizer, model = load_model(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    dataset = load_task(
        script_args.task, n=script_args.train_size, seed=training_args.seed, split=script_args.dataset_split,
        question_field=script_args.question_field, answer_field=script_args.answer_field,
    )
    resume = training_args.resume_from_checkpoint
    if resume in ("True", "true", "last"):
        resume = get_last_checkpoint(training_args.output_dir)
    if resume:
        check_checkpoint(resume)
    trainer = MARLTrainer(
        model, planner, training_args, train_dataset=dataset, processing_class=tokenizer,
        callbacks=[TimeBudget(script_args.max_train_seconds)] if script_args.max_train_seconds else None,
    )
    arith = script_args.task == "arith" and script_args.eval_limit > 0 and trainer.accelerator.is_main_process
    before = evaluation(script_args, model, tokenizer, library, planner_dir, transfer=False) if arith and not resume else {}

    trainer.train(resume_from_checkpoint=resume)

    out = Path(training_args.output_dir)
    trainer.save_model(str(out / "reasoner"))
    trainer.save_planner(out / "planner")
    if not trainer.accelerator.is_main_process:
        return ""
    plots = plot_training(trainer.state.log_history, out)
    logger.info("plots: %s", ", ".join(map(str, plots)))
    report = f"trained planner: {out / 'planner'}  (python -m rsim_graph solve --planner {out / 'planner'} \"12+7*3\")"
    if arith:
        after = evaluation(script_args, model, tokenizer, library, str(out / "planner"), transfer=True)
        (out / "results.json").write_text(json.dumps({"before": before, "after": after}, indent=2))
        report = table(before, after) + "\n" + report
    return report


def cli(argv: list[str] | None = None) -> int:
    return run_script((MARLScriptArguments, MARLConfig, ModelConfig), main, "arith_tiny.yaml", argv)


if __name__ == "__main__":
    sys.exit(cli())
