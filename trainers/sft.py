"""`python -m trainers.sft`: the reasoner's format warm-up with TRL's `SFTTrainer` (paper, Sec. 3.5).

    python -m trainers.sft                                    # ArithWorld, bundled tiny reasoner and planner-init
    python -m trainers.sft --task data/math.jsonl --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct

`python -m trainers.marl` runs the same warm-up first (`--warmup false` skips it); this script runs it alone.

The paper warms the reasoner up on about 1,000 samples that are correctly formatted but solved
incorrectly, so it learns the step format without being taught answers. They come from the reasoner's
own sampled rollouts: the rSIM graph runs the task's training questions with the planner sampling
(default: the run's initial planner) and the reasoner sampling at `temperature`, and keeps each
trajectory with R_format = 1 and R_acc = 0. Any task works, since only the grader is needed.

Samples are tokenized the way rollouts are (question in the chat template, then each step's injected
strategy text and the step), and the injected text is masked out of the loss, as in the RL stage.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import set_seed
from trl import ModelConfig, SFTConfig, SFTTrainer

from rsim_graph.config import runtime_field
from rsim_graph.errors import InputError
from rsim_graph.graph import build_graph, protocol_history, run_batch
from rsim_graph.loading import load_planner, resolve_injection
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.scoring.rewards import accuracy_reward, format_reward
from rsim_graph.strategies import StrategyLibrary, load_strategies
from trainers.cli import run_script
from trainers.common import TaskArguments, load_model
from trainers.data import task_dataset

logger = logging.getLogger(__name__)


@dataclass
class SFTScriptArguments(TaskArguments):
    warmup_size: int = field(default=1000, metadata={"help": "Warm-up samples to select (paper: about 1,000)."})
    planner: str | None = field(default=None, metadata={"help": "Planner that samples the strategies: a planner spec as for solve (unset: tiny-init, the bundled untrained planner)."})
    temperature: float = field(default=1.0, metadata={"help": "The reasoner's sampling temperature for the warm-up rollouts."})
    # The runtime's flags (`rsim_graph.config.RuntimeConfig`), as solve, the server, evals and trainers.marl take them.
    max_reasoning_steps: int = runtime_field("max_reasoning_steps")
    max_step_tokens: int = runtime_field("max_step_tokens")
    injection: str = runtime_field("injection")
    strategies: str | None = runtime_field("strategies")


def tokenize_sample(
    reasoner: HFReasoner, question: str, steps: list[tuple[str, str]], library: StrategyLibrary, injection: str = "prefill"
) -> dict:
    """`input_ids` and `completion_mask` (1 on the reasoner's own tokens) for one trajectory of (strategy, text),
    in the context the graph gives the reasoner under `injection`."""
    ids = reasoner.question_ids(question, protocol_history(None, injection))
    mask = [0] * len(ids)
    for i, (strategy, text) in enumerate(steps):
        injected = reasoner.encode(library.render(strategy, injection=injection, step=i))
        body = reasoner.encode(text + library.step_delimiter)
        ids += injected + body
        mask += [0] * len(injected) + [1] * len(body)
    return {"input_ids": ids, "completion_mask": mask}


def collect_warmup(
    planner: Planner, reasoner: HFReasoner, library: StrategyLibrary, questions: list[str], golds: list[str], n: int,
    *, seed: int = 0, max_steps: int = 12, max_step_tokens: int = 96, chunk: int = 64, max_rollouts: int = 0, injection: str = "prefill",
) -> tuple[list[tuple[str, list[tuple[str, str]]]], int]:
    """Up to `n` of the reasoner's own rollouts with R_format = 1 and R_acc = 0, as `(question, [(strategy, text)])`;
    and how many rollouts were drawn.

    Questions are visited in a seeded order, each once, so a question never gives two samples. `max_rollouts`
    (0: no limit) bounds the rollouts drawn: a slow real model may rarely write a formatted trajectory.
    """
    graph = build_graph(planner, reasoner, library, max_steps=max_steps, max_step_tokens=max_step_tokens, injection=injection)
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    order = order[:max_rollouts] if max_rollouts > 0 else order
    out: list[tuple[str, list[tuple[str, str]]]] = []
    drawn = 0
    for k in range(0, len(order), chunk):
        part = order[k : k + chunk]
        drawn += len(part)
        for i, state in zip(part, run_batch(graph, [questions[i] for i in part]), strict=True):
            texts = [s["text"] for s in state["steps"]]
            kw = {"step_texts": [texts], "step_delimiter": library.step_delimiter}
            if format_reward([""], **kw) == [1.0] and accuracy_reward([""], [golds[i]], **kw) == [0.0]:
                out.append((questions[i], [(s["strategy"], s["text"]) for s in state["steps"]]))
        if len(out) >= n:
            return out[:n], drawn
    logger.warning("only %d warm-up samples found in %d rollouts (asked for %d)", len(out), drawn, n)
    return out, drawn


def run_warmup(
    reasoner: HFReasoner, samples: list[tuple[str, list[tuple[str, str]]]], library: StrategyLibrary, args: SFTConfig,
    injection: str = "prefill",
) -> dict:
    """One SFT pass over the warm-up trajectories (the reasoner's model is trained in place); returns TRL's train metrics."""
    rows = [tokenize_sample(reasoner, q, steps, library, injection) for q, steps in samples]
    model = reasoner.model.train()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=reasoner.tokenizer)
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    return result.metrics


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> str:
    set_seed(training_args.seed)
    library = load_strategies(script_args.strategies)
    tokenizer, model = load_model(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    data = task_dataset(script_args, n=script_args.train_size, seed=training_args.seed)
    planner = load_planner(script_args.planner or "tiny-init", library, seed=training_args.seed)
    sampler = HFReasoner(model.eval(), tokenizer, temperature=script_args.temperature, seed=training_args.seed)
    injection = resolve_injection(script_args.injection, model_args.model_name_or_path, None, tokenizer)
    samples, drawn = collect_warmup(
        planner, sampler, library, data["prompt"], data["solution"], script_args.warmup_size, seed=training_args.seed,
        max_steps=script_args.max_reasoning_steps, max_step_tokens=script_args.max_step_tokens, injection=injection,
    )
    logger.info("warm-up set: %d samples from %d rollouts", len(samples), drawn)
    if not samples:
        raise InputError(
            f"none of {drawn} rollouts was correctly formatted and incorrectly solved, so there is nothing to warm up on; "
            "draw more questions (--train_size) or sample more freely (--temperature)"
        )
    run_warmup(sampler, samples, library, training_args, injection)
    trainer_out = Path(training_args.output_dir) / "reasoner"
    model.save_pretrained(trainer_out)
    tokenizer.save_pretrained(trainer_out)
    return f"warmed-up reasoner: {trainer_out} ({len(samples)} samples from {drawn} rollouts)"


def cli(argv: list[str] | None = None) -> int:
    return run_script((SFTScriptArguments, SFTConfig, ModelConfig), main, "sft_arith_tiny.yaml", argv)


if __name__ == "__main__":
    sys.exit(cli())
