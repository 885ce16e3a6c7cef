"""Pretrain the bundled tiny ArithWorld models from scratch on teacher traces (CPU, deterministic from the seed).

    python -m trainers.pretrain_tiny                      # rebuilds rsim_graph/assets/{reasoner,reasoner-b,planner-init}
    python -m trainers.pretrain_tiny --which planner-backbone   # only planner-init
    python -m trainers.pretrain_tiny --which reasoner --steps 200 --output_dir /tmp/tiny

The traces mix plain chain of thought (2 in 8, no strategy injected), trajectories under a noisy
expert planner (4 in 8) and under a uniform random planner (2 in 8), so every strategy is seen in
every state while most of the compute goes to the column arithmetic that decides accuracy.
Loss is on the reasoner's own tokens only: the question and the injected strategy text are masked.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM

from rsim_graph.loading import ASSETS
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import ArithConfig, ArithWorld
from rsim_graph.tasks.arith_traces import injected_trace, zero_cot
from rsim_graph.engine.tiny_models import build_tokenizer, tiny_config

logger = logging.getLogger(__name__)
IGNORE = -100

# name: (hidden, layers, heads, seed, steps). About 50 minutes on 2 cores in all.
# `planner-backbone` is the planner's language model (planner-init = it + a fresh action head); it is a
# short run of reasoner-b's architecture and seed, so the planner never shares weights with the
# reasoner-b that plug-in transfer is measured on.
MODELS = {
    "reasoner": (128, 4, 4, 0, 2000),
    "reasoner-b": (96, 3, 4, 1, 2400),
    "planner-backbone": (96, 3, 4, 1, 800),
}


def example(i: int, world: ArithWorld, tok, library: StrategyLibrary, slip: float) -> tuple[list[int], list[int]]:
    """One training sequence (ids, labels) for problem `i`."""
    p = world.problem(i)
    rng = random.Random(i)
    q_ids = tok(tok.apply_chat_template([{"role": "user", "content": p.question}], add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    ids, labels = list(q_ids), [IGNORE] * len(q_ids)
    kind = i % 8
    if kind < 2:  # plain chain of thought
        body = tok(zero_cot(p, rng, slip) + library.step_delimiter, add_special_tokens=False)["input_ids"]
        ids += body
        labels += body
    else:
        for strategy, text in injected_trace(p, rng, slip, library, expert=kind < 6):
            inj = tok(library.render(strategy), add_special_tokens=False)["input_ids"]
            body = tok(text + library.step_delimiter, add_special_tokens=False)["input_ids"]
            ids += inj + body
            labels += [IGNORE] * len(inj) + body
    ids.append(tok.eos_token_id)
    labels.append(tok.eos_token_id)
    return ids, labels


def batches(n_examples: int, batch_size: int, world, tok, library, slip: float, seed: int):
    """Endless length-bucketed batches: sort a pool by length so padding stays small."""
    rng = random.Random(seed)
    i = 0
    while True:
        pool = [example(i + k, world, tok, library, slip) for k in range(batch_size * 16)]
        i = (i + len(pool)) % n_examples
        pool.sort(key=lambda x: len(x[0]))
        chunks = [pool[k : k + batch_size] for k in range(0, len(pool), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            L = max(len(x[0]) for x in chunk)
            ids = torch.full((len(chunk), L), tok.pad_token_id)
            labels = torch.full((len(chunk), L), IGNORE)
            for r, (x, y) in enumerate(chunk):
                ids[r, : len(x)] = torch.tensor(x)
                labels[r, : len(y)] = torch.tensor(y)
            yield ids, labels


def pretrain(name: str, out: Path, *, steps: int | None = None, batch_size: int = 32, lr: float = 3e-3, n_examples: int = 200_000) -> Path:
    hidden, layers, heads, seed, default_steps = MODELS[name]
    steps = steps or default_steps
    torch.manual_seed(seed)
    library = StrategyLibrary.default()
    tok = build_tokenizer(library)
    model = AutoModelForCausalLM.from_config(tiny_config(len(tok), hidden=hidden, layers=layers, heads=heads), attn_implementation="sdpa")
    world = ArithWorld(ArithConfig(), split="train", seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    data = batches(n_examples, batch_size, world, tok, library, ArithConfig().slip, seed)
    model.train()
    t0 = time.time()
    for step in range(1, steps + 1):
        ids, labels = next(data)
        loss = model(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps:
            logger.info("[%s] step %d/%d loss %.4f (%.0fs)", name, step, steps, loss.item(), time.time() - t0)
    path = out / name
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_planner_init(backbone_dir: Path, out: Path) -> Path:
    """The paper's planner initialisation: a pretrained LM backbone plus a freshly initialised action head."""
    torch.manual_seed(0)
    library = StrategyLibrary.default()
    backbone = AutoModel.from_pretrained(backbone_dir, attn_implementation="eager")
    # The tiny planner reads the end of each step (its result) and at most 256 characters in all: enough
    # for ArithWorld, and it keeps the planner's forward passes cheap in rollouts.
    planner = PolicyPlanner(backbone, build_tokenizer(library), library, max_length=256, max_step_chars=48)
    planner.save_pretrained(out / "planner-init")
    return out / "planner-init"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--which", choices=["all", *MODELS], default="all", help="which bundled model to rebuild")
    p.add_argument("--output_dir", type=Path, default=ASSETS, help="where the models are written")
    p.add_argument("--steps", type=int, default=None, help="override the model's default number of steps")
    p.add_argument("--batch_size", type=int, default=32, help="sequences per optimizer step")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = list(MODELS) if args.which == "all" else [args.which]
    for name in names:
        if name == "planner-backbone":
            with tempfile.TemporaryDirectory() as tmp:
                backbone = pretrain(name, Path(tmp), steps=args.steps, batch_size=args.batch_size)
                logger.info("saved %s", make_planner_init(backbone, args.output_dir))
            continue
        path = pretrain(name, args.output_dir, steps=args.steps, batch_size=args.batch_size)
        logger.info("saved %s", path)


if __name__ == "__main__":
    main()
