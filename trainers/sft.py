"""`python -m trainers.sft`: the reasoner's format warm-up with TRL's `SFTTrainer` (paper, Sec. 3.5).

    python -m trainers.sft                                    # ArithWorld teacher traces, bundled tiny reasoner
    python -m trainers.sft --source graph --planner random    # filter the reasoner's own rSIM rollouts

The paper warms the reasoner up on about 1,000 samples that are correctly formatted but solved
incorrectly, so it learns the step format without being taught answers. `build_warmup` selects them:
- `teacher` (ArithWorld only): the world's teacher traces under a noisy expert or random planner;
- `graph` (any task): trajectories the rSIM graph produces with `--planner` and the reasoner itself
  (or `--teacher_model`), kept when R_format = 1 and R_acc = 0.

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

from rsim_graph.errors import RSIMError
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import load_planner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.rewards import accuracy_reward, format_reward
from rsim_graph.strategies import StrategyLibrary, load_strategies
from rsim_graph.tasks.arith import ArithWorld
from rsim_graph.tasks.arith_traces import warmup_samples
from trainers.cli import run_script
from trainers.common import TaskArguments, load_model
from trainers.data import load_task

logger = logging.getLogger(__name__)


@dataclass
class SFTScriptArguments(TaskArguments):
    warmup_size: int = field(default=1000, metadata={"help": "Warm-up samples to select (paper: about 1,000)."})
    source: str = field(default="teacher", metadata={"help": "'teacher' (ArithWorld traces) or 'graph' (filtered rSIM rollouts)."})
    planner: str = field(default="random", metadata={"help": "Planner for the graph source (any `--planner` spec)."})
    teacher_model: str | None = field(default=None, metadata={"help": "Reasoner for the graph source (default: the model being trained)."})
    strategies: str | None = field(default=None, metadata={"help": "Strategy library YAML."})


def tokenize_sample(reasoner: HFReasoner, question: str, steps: list[tuple[str, str]], library: StrategyLibrary) -> dict:
    """`input_ids` and `completion_mask` (1 on the reasoner's own tokens) for one trajectory of (strategy, text)."""
    ids = reasoner.question_ids(question)
    mask = [0] * len(ids)
    for strategy, text in steps:
        injected = reasoner.encode(library.render(strategy))
        body = reasoner.encode(text + library.step_delimiter)
        ids += injected + body
        mask += [0] * len(injected) + [1] * len(body)
    return {"input_ids": ids, "completion_mask": mask}


def build_warmup(source: str, n: int, reasoner: HFReasoner, library: StrategyLibrary, *, questions=None, golds=None, planner: str = "random", seed: int = 0) -> list[dict]:
    """Select `n` correctly formatted, incorrectly solved trajectories as tokenized samples."""
    if source == "teacher":
        samples = warmup_samples(ArithWorld(split="train", seed=seed), library, n=n)
        return [tokenize_sample(reasoner, s["question"], list(zip(s["strategies"], s["step_texts"], strict=True)), library) for s in samples]
    if source != "graph":
        raise RSIMError(f"unknown warm-up source {source!r}; use 'teacher' (ArithWorld) or 'graph'")
    graph = build_graph(load_planner(planner, library, seed=seed), reasoner, library)
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    out: list[dict] = []
    for k in range(0, len(order), 64):
        chunk = order[k : k + 64]
        for i, state in zip(chunk, run_batch(graph, [questions[i] for i in chunk]), strict=True):
            texts = [s["text"] for s in state["steps"]]
            final = "\n\n".join(texts)
            if format_reward([final], step_texts=[texts]) == [1.0] and accuracy_reward([final], [golds[i]]) == [0.0]:
                out.append(tokenize_sample(reasoner, questions[i], [(s["strategy"], s["text"]) for s in state["steps"]], library))
        if len(out) >= n:
            return out[:n]
    logger.warning("only %d warm-up samples found in %d questions (asked for %d)", len(out), len(questions), n)
    return out


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> str:
    set_seed(training_args.seed)
    library = load_strategies(script_args.strategies)
    tokenizer, model = load_model(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    if script_args.teacher_model:
        teacher = HFReasoner.from_pretrained(script_args.teacher_model, temperature=1.0, seed=training_args.seed)
    else:
        teacher = HFReasoner(model.eval(), tokenizer, temperature=1.0, seed=training_args.seed)
    questions = golds = None
    if script_args.source == "graph":
        data = load_task(
            script_args.task, n=script_args.train_size, seed=training_args.seed, split=script_args.dataset_split,
            question_field=script_args.question_field, answer_field=script_args.answer_field,
        )
        questions, golds = data["prompt"], data["solution"]
    samples = build_warmup(script_args.source, script_args.warmup_size, teacher, library, questions=questions, golds=golds, planner=script_args.planner, seed=training_args.seed)
    logger.info("warm-up set: %d samples", len(samples))
    trainer = SFTTrainer(model=model.train(), args=training_args, train_dataset=Dataset.from_list(samples), processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(str(Path(training_args.output_dir) / "reasoner"))
    return f"warmed-up reasoner: {Path(training_args.output_dir) / 'reasoner'} ({len(samples)} samples)"


def cli(argv: list[str] | None = None) -> int:
    return run_script((SFTScriptArguments, SFTConfig, ModelConfig), main, "sft_arith_tiny.yaml", argv)


if __name__ == "__main__":
    sys.exit(cli())
