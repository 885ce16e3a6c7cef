"""Held-out validation during training, and the best checkpoint of both agents.

Every `every` optimizer steps (and once before the first, after the warm-up) the run answers the
validation problems greedily, with the live planner choosing its most likely strategy and the live
reasoner decoding greedily: the way `python -m evals --method rsim` answers. When the accuracy beats
every earlier one, both agents are saved to `<output_dir>/best/`; `python -m trainers.marl` ends by
loading them back, so the final and bundled models are the best validated ones, not the last.

Validation runs on the main process only, with the unwrapped models, while the other ranks wait: fine for
DDP and ZeRO-2 (raise `ddp_timeout` for long validations), but under ZeRO-3 (sharded weights) set
`--validation_size 0`. It uses at most 12 steps a problem, as the final evaluation does.
"""

from __future__ import annotations

import json
import time
import logging
from pathlib import Path

import torch
from transformers import TrainerCallback

from rsim_graph.scoring.grading import extract_answer
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.tasks.base import Problem

logger = logging.getLogger(__name__)

BEST_DIR = "best"
RECORD = "validation.json"


def greedy_accuracy(trainer, problems: list[Problem], limits: dict) -> float:
    """Accuracy of the trainer's live planner (greedy) and reasoner (greedy) on `problems`."""
    planner: PolicyPlanner = trainer.planner
    model = trainer.accelerator.unwrap_model(trainer.model)
    was = (planner.greedy, planner.training, model.training)
    planner.greedy = True
    planner.eval()
    model.eval()
    try:
        reasoner = HFReasoner(model, trainer.processing_class, temperature=0.0)
        graph = build_graph(planner, reasoner, trainer.library, **limits, injection=trainer.args.injection)
        with torch.no_grad():
            states = run_batch(graph, [p.question for p in problems])
    finally:
        planner.greedy = was[0]
        planner.train(was[1])
        model.train(was[2])
    delimiter = trainer.library.step_delimiter
    texts = [delimiter.join(x["text"] for x in s["steps"]) for s in states]
    right = [p.grade_output(extract_answer(t), t) for p, t in zip(problems, texts, strict=True)]
    return sum(right) / max(1, len(right))


class Validation(TrainerCallback):
    """Validates every `every` steps and keeps the best planner and reasoner in `<output_dir>/best/`.

    Args:
        trainer (`MARLTrainer`).
        problems (`list[Problem]`): held out from training.
        every (`int`): optimizer steps between validations (also run before the first step and after the last).
        limits (`dict`): the graph's budgets for validation, as the final evaluation uses them.
    """

    def __init__(self, trainer, problems: list[Problem], every: int, limits: dict):
        self.trainer = trainer
        self.problems = problems
        self.every = every
        self.limits = limits
        self.best_dir = Path(trainer.args.output_dir) / BEST_DIR
        self.history: list[dict] = []
        self.best: dict | None = None
        self.seconds = 0.0  # wall time spent validating (and saving the best pair), inside the training phase

    def restore(self) -> None:
        """Continue the record of an interrupted run (on resume; `on_train_begin` drops what the checkpoint did not reach)."""
        path = self.best_dir / RECORD
        if path.is_file():
            saved = json.loads(path.read_text())
            self.history, self.best = saved["history"], saved["best"]

    def validate(self, step: int) -> None:
        if not self.trainer.accelerator.is_main_process or any(h["step"] == step for h in self.history):
            return
        start = time.perf_counter()
        try:
            self._validate(step)
        finally:
            self.seconds += time.perf_counter() - start

    def _validate(self, step: int) -> None:
        acc = greedy_accuracy(self.trainer, self.problems, self.limits)
        self.history.append({"step": step, "accuracy": acc})
        logger.info("validation at step %d: %.1f%% (%d problems)", step, 100 * acc, len(self.problems))
        if self.best is None or acc > self.best["accuracy"]:
            self.best = {"step": step, "accuracy": acc}
            with self.trainer.reasoner_only() as model:
                model.save_pretrained(self.best_dir / "reasoner")
            self.trainer.processing_class.save_pretrained(self.best_dir / "reasoner")
            self.trainer.planner.save_pretrained(self.best_dir / "planner")
        self.best_dir.mkdir(parents=True, exist_ok=True)
        (self.best_dir / RECORD).write_text(json.dumps({"best": self.best, "history": self.history}, indent=2))
        # Logged with the step's other metrics: a log call of its own would run collectives on one rank only.
        self.trainer._metrics["train"]["val_accuracy"].append(acc)

    def on_train_begin(self, args, state, control, **kwargs):
        # Validations after the resumed checkpoint belong to steps that will be run again.
        self.history = [h for h in self.history if h["step"] <= state.global_step]
        if self.best is not None and self.best["step"] > state.global_step:
            logger.warning("the best pair (step %d) is newer than the checkpoint (step %d): validating afresh", self.best["step"], state.global_step)
            self.best = None  # the next validation saves a new best pair
        if state.global_step == 0:
            self.validate(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps or control.should_training_stop:
            self.validate(state.global_step)

    def load_best(self) -> dict | None:
        """Put the best validated weights back into the trainer's planner and reasoner; returns the best record, with
        `improved`: whether a validation after the first (step 0, before any training) beat it. When none did, the
        final pair is the starting one, and a warning says so."""
        if self.best is None or not (self.best_dir / "planner").is_dir():
            return None
        first = min(self.history, key=lambda h: h["step"]) if self.history else self.best
        improved = self.best["step"] != first["step"]
        if not improved:
            logger.warning(
                "no validation beat step %d (%.1f%%): the final pair is the step-%d pair", first["step"], 100 * first["accuracy"], first["step"]
            )
        from safetensors.torch import load_file

        self.trainer.planner.load_state_dict(PolicyPlanner.from_pretrained(self.best_dir / "planner").state_dict())
        adapter = self.best_dir / "reasoner" / "adapter_model.safetensors"
        with self.trainer.reasoner_only() as model:
            if adapter.is_file():  # a LoRA reasoner saves its adapter alone
                from peft import set_peft_model_state_dict

                result = set_peft_model_state_dict(model, load_file(adapter))
                result.missing_keys[:] = []  # the frozen base model's keys: not in an adapter by design
            else:
                result = model.load_state_dict(load_file(self.best_dir / "reasoner" / "model.safetensors"), strict=False)
        tied = {k for k in result.missing_keys if k.endswith("lm_head.weight")}  # tied to the embeddings, saved once
        if result.unexpected_keys or set(result.missing_keys) - tied:
            raise RuntimeError(f"best reasoner in {self.best_dir} does not match the model: {result.unexpected_keys or result.missing_keys}")
        return {**self.best, "improved": improved}
