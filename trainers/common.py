"""What the trainer scripts share: task arguments, loading the reasoner, a wall-clock budget, and
the before/after evaluation on ArithWorld's held-out problems."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from rsim_graph.config import RuntimeConfig
from rsim_graph.evaluation.runner import evaluate
from rsim_graph.loading import BUNDLED_REASONER, bundled
from rsim_graph.reasoners.hf import HFReasoner, load_causal_lm
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import ArithWorld

logger = logging.getLogger(__name__)


@dataclass
class TaskArguments:
    """What to train on and how to evaluate afterwards."""

    task: str | None = field(
        default=None,
        metadata={
            "help": "An ArithWorld task ('arith', 'arith-easy'), a benchmark ('gsm8k', 'math500', ...), a JSON Lines file, or a Hugging "
            "Face dataset id (unset: arith, or a custom task with --data_file alone, as in evals)."
        },
    )
    data_file: str | None = field(default=None, metadata={"help": "A local JSON Lines copy of the task (a benchmark keeps its fields and answer format)."})
    dataset_split: str = field(default="train", metadata={"help": "Split of the task: ArithWorld's train or test, or the hub dataset's."})
    dataset_config: str | None = field(default=None, metadata={"help": "Config of a hub dataset (default: a benchmark's own, such as GSM8K's 'main')."})
    question_field: str | None = field(default=None, metadata={"help": "Field holding the question (default: the benchmark's own, or 'question')."})
    answer_field: str | None = field(default=None, metadata={"help": "Field holding the gold answer (default: the benchmark's own, or 'answer')."})
    train_size: int = field(default=20_000, metadata={"help": "Training problems (0: the whole dataset)."})
    eval_limit: int = field(default=200, metadata={"help": "Held-out ArithWorld problems for the before/after table (0: skip)."})
    max_train_seconds: float | None = field(default=None, metadata={"help": "Stop training after this many seconds."})

    def __post_init__(self):
        self.task = self.task or ("custom" if self.data_file else "arith")  # a data file alone is a custom task


def load_model(model_name_or_path: str | None, dtype: str | None = None, attn_implementation: str | None = None):
    """(tokenizer, model) for the reasoner: a local directory, a hub id, or the bundled tiny reasoner."""
    path = model_name_or_path or str(bundled(BUNDLED_REASONER))
    torch_dtype = None if dtype in (None, "auto") else getattr(torch, dtype)
    tokenizer, model = load_causal_lm(path, dtype=torch_dtype, attn_implementation=attn_implementation or "sdpa")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model.train()


def eval_config(max_total_tokens: int, max_step_tokens: int | None = None, injection: str = "auto") -> RuntimeConfig:
    """The before/after tables' runtime: greedy, the rollouts' budgets and injection, 12 steps as in validation."""
    step = max_step_tokens or min(max_total_tokens, RuntimeConfig.max_step_tokens)
    return RuntimeConfig(max_step_tokens=step, max_total_tokens=max_total_tokens, injection=injection)


def apply_lora(model, model_args, last_layers: int = 0):
    """The reasoner wrapped in a LoRA adapter when `--use_peft` is set (TRL's `lora_*` flags), else unchanged.

    Wrapped here, before the warm-up, so that the warm-up and RL train the same adapter, and the saved adapter
    (`adapter_config.json`) names its base model by the spec it was loaded from (`smollm2`), not a cache path.
    `last_layers` limits LoRA to the last N decoder layers: the backward pass then stops there.
    """
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is None:
        return model
    from peft import get_peft_model

    if last_layers:
        n = model.config.num_hidden_layers
        if not 0 < last_layers <= n:
            raise ValueError(f"lora_last_layers={last_layers}, but the reasoner has {n} decoder layers; pass 1 to {n}, or 0 for all")
        config.layers_to_transform = list(range(n - last_layers, n))
    model = get_peft_model(model, config)
    model.peft_config["default"].base_model_name_or_path = model_args.model_name_or_path
    return model


class TimeBudget(TrainerCallback):
    """Stops training once `seconds` of wall-clock time have passed (for equal-time baselines)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start >= self.seconds:
            logger.info("time budget of %.0fs reached at step %d", self.seconds, state.global_step)
            control.should_training_stop = True
            control.should_save = True


def evaluate_arith(
    methods: dict[str, str], model, tokenizer, library: StrategyLibrary, limit: int, config: RuntimeConfig, *, reasoner=None
) -> dict[str, dict]:
    """Greedy accuracy of each `{label: method}` on `limit` held-out ArithWorld problems (the evals' `evaluate`,
    with `config`'s budgets and injection format)."""
    was_training = model.training if model is not None else False
    reasoner = reasoner or HFReasoner(model.eval(), tokenizer, temperature=0.0)
    problems = ArithWorld(split="test", seed=0).problems(limit)
    out = {}
    try:
        for label, method in methods.items():
            summary, records = evaluate(method, problems, reasoner, library, config)
            counts = Counter(s for r in records for s in r["strategies"])
            top = counts.most_common(1)[0] if counts else (None, 0)
            # The heuristic planner's rule: one deep-think per operation of the problem.
            rule = [r["strategies"].count("deep-think") == len(p.meta["ops"]) for p, r in zip(problems, records, strict=True)]
            out[label] = {
                "accuracy": summary.accuracy, "n": summary.n, "distinct_strategies": len(counts), "strategies": sorted(counts),
                "top_strategy": top[0], "top_share": top[1] / max(1, counts.total()),  # the most used strategy's share of all steps
                "deep_think_per_op": sum(rule) / max(1, len(rule)) if counts else 0.0,
            }
    finally:
        if model is not None:
            model.train(was_training)
    return out
