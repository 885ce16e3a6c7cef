"""`python -m trainers.marl`: rSIM's leader-follower GRPO (arXiv 2512.08300, Sec. 3.4).

    python -m trainers.marl                                          # ArithWorld, bundled tiny models (the main job)
    python -m trainers.marl --config trainers/recipes/qwen2.5-0.5b_planner-0.5b_math.yaml
    python -m trainers.marl --max_steps 20 --output_dir /tmp/run      # flags override the recipe
    python -m trainers.marl --resume_from_checkpoint outputs/marl/checkpoint-40
    accelerate launch --config_file trainers/recipes/accelerate/multi_cpu.yaml -m trainers.marl

With no `--config`, the default recipe `trainers/recipes/arith_tiny.yaml` is used. The run:
1. warms the reasoner up on about 1,000 of its own correctly formatted, incorrectly solved rollouts
   (`trainers/sft.py`; `--warmup false` skips it);
2. trains planner and reasoner together (`MARLTrainer`), validating greedily on held-out problems every
   `--validation_steps` steps and keeping the best pair (`trainers/validation.py`);
3. saves the best planner and reasoner to `<output_dir>/planner` and `<output_dir>/reasoner`, and on
   ArithWorld prints a before/after accuracy table on held-out test problems (`results.json`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import set_seed
from trl import ModelConfig, SFTConfig

from rsim_graph.config import runtime_field
from rsim_graph.loading import BUNDLED_REASONER, BUNDLED_REASONER_B, bundled, planner_path, resolve_injection
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.strategies import load_strategies
from rsim_graph.tasks.base import Problem
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
from trainers.marl_config import MARLConfig
from trainers.marl_trainer import MARLTrainer, check_checkpoint, last_whole_checkpoint
from trainers.plots import plot_training
from trainers.sft import collect_warmup, run_warmup
from trainers.validation import Validation

logger = logging.getLogger(__name__)


@dataclass
class MARLScriptArguments(TaskArguments):
    planner: str | None = field(
        default=None,
        metadata={
            "help": "The planner training starts from: a planner checkpoint (a directory, 'tiny-init', 'tiny' or 'smollm2'), or a "
            "language model (path or hub id) to put a fresh head on (unset: tiny-init, the bundled untrained planner)."
        },
    )
    strategies: str | None = runtime_field("strategies")
    transfer_reasoner: str | None = field(
        default=None, metadata={"help": "A second reasoner for the plug-in row of the table (arith default: bundled reasoner-b)."}
    )
    warmup: bool = field(default=True, metadata={"help": "Run the paper's format warm-up before RL (false: skip it)."})
    warmup_size: int = field(default=1000, metadata={"help": "Warm-up samples: formatted but wrong own rollouts (paper: about 1,000)."})
    warmup_learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate of the warm-up SFT pass."})
    warmup_temperature: float = field(default=1.0, metadata={"help": "The reasoner's sampling temperature in warm-up rollouts."})
    warmup_max_rollouts: int = field(default=0, metadata={"help": "Most rollouts drawn to find warm-up samples (0: no limit)."})
    planner_train: str = field(
        default="full", metadata={"help": "What of the planner trains: 'full' (backbone and head) or 'head' (frozen backbone; checkpoints hold the head only)."}
    )
    lora_last_layers: int = field(default=0, metadata={"help": "With --use_peft: LoRA on the reasoner's last N decoder layers only (0: all)."})
    validation_size: int = field(default=100, metadata={"help": "Training problems held out for validation (0: no validation, the last step is final)."})
    validation_steps: int = field(default=20, metadata={"help": "Optimizer steps between validations."})


def evaluation(script_args, config, model, tokenizer, library, planner_dir: str, *, initial_reasoner: str | None = None) -> dict:
    """Greedy accuracy on held-out ArithWorld test problems: the run's reasoner alone and with the planner;
    with `initial_reasoner` (after training) also that reasoner under the trained planner, and the plug-in reasoner-b."""
    from rsim_graph.reasoners.hf import HFReasoner

    rows = evaluate_arith({"ZeroCoT": "zero-cot", "rSIM planner": f"rsim:{planner_dir}"}, model, tokenizer, library, script_args.eval_limit, config)
    if initial_reasoner:
        start = HFReasoner.from_pretrained(initial_reasoner, temperature=0.0)
        rows["rSIM planner (initial reasoner)"] = evaluate_arith({"x": f"rsim:{planner_dir}"}, None, None, library, script_args.eval_limit, config, reasoner=start)["x"]
        other = HFReasoner.from_pretrained(script_args.transfer_reasoner or str(bundled(BUNDLED_REASONER_B)), temperature=0.0)
        plug = evaluate_arith({"ZeroCoT": "zero-cot", "rSIM planner": f"rsim:{planner_dir}"}, None, None, library, script_args.eval_limit, config, reasoner=other)
        rows.update({f"{k} (reasoner-b)": v for k, v in plug.items()})
    return rows


def table(before: dict, after: dict) -> str:
    lines = ["| Method | before | after | distinct strategies after | one deep-think per operation |", "|---|---|---|---|---|"]
    for label, a in after.items():
        b = before.get(label, {}).get("accuracy")
        rule = f"{100 * a['deep_think_per_op']:.1f}%" if a["distinct_strategies"] else "-"
        lines.append(f"| {label} | {'-' if b is None else f'{100 * b:.1f}%'} | {100 * a['accuracy']:.1f}% | {a['distinct_strategies']} | {rule} |")
    return "\n".join(lines)


def load_starting_planner(script_args, library, seed: int) -> PolicyPlanner:
    if script_args.planner_train not in ("full", "head"):
        raise ValueError(f"planner_train={script_args.planner_train!r} is not a choice; use 'full' (backbone and head) or 'head' (head only)")
    planner_dir = str(planner_path(script_args.planner or "tiny-init"))
    if (Path(planner_dir) / "planner.json").is_file():
        planner = PolicyPlanner.from_pretrained(planner_dir, seed=seed)
        planner.backbone_spec = planner.backbone_spec or str(Path(planner_dir) / "backbone")
    else:
        planner = PolicyPlanner.from_backbone(planner_dir, library, seed=seed)
    planner.set_backbone_trainable(script_args.planner_train == "full")
    if planner.library.ids != library.ids:
        planner.grow(library)  # continual learning: new strategies get fresh head rows, old rows are kept
    return planner


def warmup_config(script_args, training_args: MARLConfig) -> SFTConfig:
    """The warm-up's SFT pass: one epoch at `warmup_learning_rate`, with the loss on the reasoner's own tokens only
    (`completion_only_loss`: the injected strategy text is masked out, as in the RL stage)."""
    return SFTConfig(
        output_dir=str(Path(training_args.output_dir) / "warmup"), per_device_train_batch_size=training_args.per_device_train_batch_size,
        num_train_epochs=1, learning_rate=script_args.warmup_learning_rate, lr_scheduler_type="constant",
        completion_only_loss=True, bf16=training_args.bf16, gradient_checkpointing=training_args.gradient_checkpointing,
        seed=training_args.seed, save_strategy="no", report_to="none", logging_steps=10, use_cpu=training_args.use_cpu,
        disable_tqdm=training_args.disable_tqdm,
    )


def warm_up(script_args, training_args: MARLConfig, model, tokenizer, planner, library, data) -> dict:
    """The paper's warm-up (Sec. 3.5) on the run's own task, from the reasoner's own sampled rollouts."""
    from rsim_graph.reasoners.hf import HFReasoner

    start = time.perf_counter()
    sampler = HFReasoner(model.eval(), tokenizer, temperature=script_args.warmup_temperature, seed=training_args.seed)
    samples, drawn = [], 0
    state = PartialState()
    if state.is_main_process:  # one set for every rank: their SFT passes must take the same number of steps
        samples, drawn = collect_warmup(
            planner, sampler, library, data["prompt"], data["solution"], script_args.warmup_size, seed=training_args.seed,
            max_steps=training_args.max_reasoning_steps, max_step_tokens=training_args.max_step_tokens,
            max_rollouts=script_args.warmup_max_rollouts, injection=training_args.injection,
        )
    if state.num_processes > 1:
        samples, drawn = broadcast_object_list([samples, drawn])
    metrics = run_warmup(sampler, samples, library, warmup_config(script_args, training_args), training_args.injection) if samples else {}
    logger.info("warm-up: %d samples from %d rollouts, %.0fs", len(samples), drawn, time.perf_counter() - start)
    return {"samples": len(samples), "rollouts": drawn, "seconds": round(time.perf_counter() - start, 1), "loss": metrics.get("train_loss")}


def phase_line(phases: dict[str, float]) -> str:
    """`wall time: load 6 s, before 31 s, warm-up 118 s, training 512 s (validation 61 s), after 44 s; total 711 s`.

    >>> phase_line({"load": 5.5, "before": 0.0, "warm-up": 0.0, "training": 10.2, "validation": 2.0, "after": 3.0})
    'wall time: load 6 s, training 10 s (validation 2 s), after 3 s; total 19 s'
    """
    shown = [f"{name} {v:.0f} s" + (f" (validation {phases['validation']:.0f} s)" if name == "training" and phases.get("validation") else "")
             for name, v in phases.items() if name != "validation" and v]
    total = sum(v for name, v in phases.items() if name != "validation")  # validation runs inside training
    return f"wall time: {', '.join(shown)}; total {total:.0f} s"


def main(script_args: MARLScriptArguments, training_args: MARLConfig, model_args: ModelConfig) -> str:
    started = time.perf_counter()
    set_seed(training_args.seed)
    library = load_strategies(script_args.strategies)
    planner = load_starting_planner(script_args, library, training_args.seed)
    tokenizer, model = load_model(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    model = apply_lora(model, model_args, script_args.lora_last_layers)
    training_args.injection = resolve_injection(training_args.injection, model_args.model_name_or_path, None, tokenizer)  # the warm-up's too
    greedy = eval_config(training_args.max_completion_length, training_args.max_step_tokens, training_args.injection)  # validation and the before/after tables
    # train_size 0 means the whole set; validation rows come off its end either way
    data = task_dataset(script_args, n=script_args.train_size and script_args.train_size + script_args.validation_size, seed=training_args.seed)
    if script_args.validation_size >= len(data):
        raise ValueError(f"validation_size={script_args.validation_size} leaves no training problems in {len(data)}; lower it or add data")
    held = data.select(range(len(data) - script_args.validation_size, len(data)))  # the last rows: never trained on
    dataset = data.select(range(len(data) - script_args.validation_size))
    resume = training_args.resume_from_checkpoint
    if resume in ("True", "true", "last"):
        resume = last_whole_checkpoint(training_args.output_dir)
    if resume:
        check_checkpoint(resume)
    out = Path(training_args.output_dir)
    arith = script_args.task == "arith" and script_args.eval_limit > 0
    phases = {"load": time.perf_counter() - started}  # the main job's wall time per phase (issue 26): printed and recorded
    mark = time.perf_counter()
    before = {}
    if arith and not resume and training_args.process_index == 0:
        before = evaluation(script_args, greedy, model, tokenizer, library, script_args.planner or "tiny-init")
    phases["before"], mark = time.perf_counter() - mark, time.perf_counter()
    warmup = {}
    if script_args.warmup and not resume:
        warmup = warm_up(script_args, training_args, model, tokenizer, planner, library, dataset)
    phases["warm-up"], mark = time.perf_counter() - mark, time.perf_counter()

    trainer = MARLTrainer(
        model.train(), planner, training_args, train_dataset=dataset, processing_class=tokenizer,
        callbacks=[TimeBudget(script_args.max_train_seconds)] if script_args.max_train_seconds else None,
    )
    validation = None
    if script_args.validation_size and script_args.validation_steps:
        problems = [Problem(q, a) for q, a in zip(held["prompt"], held["solution"], strict=True)]
        limits = {"max_steps": greedy.max_reasoning_steps, "max_step_tokens": greedy.max_step_tokens, "max_total_tokens": greedy.max_total_tokens}
        validation = Validation(trainer, problems, script_args.validation_steps, limits)
        if resume:
            validation.restore()
        trainer.add_callback(validation)
    train_start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - train_start
    best = validation.load_best() if validation is not None else None
    phases["training"], mark = time.perf_counter() - mark, time.perf_counter()
    phases["validation"] = validation.seconds if validation is not None else 0.0

    trainer.save_model(str(out / "reasoner"))
    trainer.save_planner(out / "planner")
    if not trainer.accelerator.is_main_process:
        return ""
    plots = plot_training(trainer.state.log_history, out)
    logger.info("plots: %s", ", ".join(map(str, plots)))
    record = {
        "seed": training_args.seed, "steps": trainer.state.global_step, "train_seconds": round(train_seconds, 1),
        "warmup": warmup, "best": best, "validation": validation.history if validation else [],
    }
    report = f"trained planner: {out / 'planner'}  (python -m rsim_graph solve --planner {out / 'planner'} \"12+7*3\")"
    if arith:
        initial = model_args.model_name_or_path or str(bundled(BUNDLED_REASONER))
        after = evaluation(script_args, greedy, model, tokenizer, library, str(out / "planner"), initial_reasoner=initial)
        record.update(before=before, after=after)
        report = table(before, after) + "\n" + report
    phases["after"] = time.perf_counter() - mark
    record["phases"] = {k: round(v, 1) for k, v in phases.items()}
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    report += "\n" + phase_line(phases)
    (out / "results.json").write_text(json.dumps(record, indent=2))
    return report


def cli(argv: list[str] | None = None) -> int:
    return run_script((MARLScriptArguments, MARLConfig, ModelConfig), main, "arith_tiny.yaml", argv)


if __name__ == "__main__":
    sys.exit(cli())
