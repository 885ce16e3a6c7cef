"""`python -m trainers.credit`: where the reasoner's GRPO signal comes from in rSIM rollouts.

    python -m trainers.credit --planner rsim_graph/assets/planner --reasoner rsim_graph/assets/reasoner

Samples `G` trajectories for each of `n` training questions, as a training step does (the planner
sampling, the reasoner at `--temperature`), and splits the within-group variance of R_acc, the only
reward term that varies once R_format and R_follow are saturated, into the part between trajectories
that took the same strategy sequence (it comes from the reasoner's own sampling, so its tokens deserve
the credit) and the part between different sequences (it comes from the planner's choices, yet GRPO's
group baseline hands it to the reasoner's tokens as advantage all the same). Then, for each
`reasoner_credit` of the trainer (`trainers/advantages.py`), the planner's share of the advantages it
would give the reasoner, and the share of trajectories it credits at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import torch

from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.scoring.rewards import accuracy_reward
from rsim_graph.strategies import StrategyLibrary
from trainers.advantages import CREDITS, between_plan_share, reasoner_advantages
from trainers.data import arith_dataset


def decompose(rewards: list[float], sequences: list[tuple[str, ...]], group: int) -> dict[str, float]:
    """Within-group sums of squares of `rewards`, split into same-sequence and between-sequence parts.

    >>> decompose([1, 0, 1, 1], [("a",), ("a",), ("b",), ("b",)], 4)
    {'total': 0.75, 'same_sequence': 0.5, 'between_sequences': 0.25}
    """
    same = between = total = 0.0
    for k in range(0, len(rewards), group):
        r, seqs = rewards[k : k + group], sequences[k : k + group]
        mean = sum(r) / len(r)
        total += sum((x - mean) ** 2 for x in r)
        by_sequence: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for x, s in zip(r, seqs, strict=True):
            by_sequence[s].append(x)
        for xs in by_sequence.values():
            m = sum(xs) / len(xs)
            same += sum((x - m) ** 2 for x in xs)
            between += len(xs) * (m - mean) ** 2
    return {"total": round(total, 4), "same_sequence": round(same, 4), "between_sequences": round(between, 4)}


def main(argv: list[str] | None = None) -> dict:
    """Sample the rollouts and return the variance split (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m trainers.credit", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--planner", required=True, help="a planner checkpoint directory")
    p.add_argument("--reasoner", required=True, help="a reasoner model directory")
    p.add_argument("--temperature", type=float, default=0.3, help="the reasoner's sampling temperature (arith_tiny: 0.3)")
    p.add_argument("--n", type=int, default=48, help="training questions")
    p.add_argument("--group", type=int, default=8, help="trajectories per question (num_generations)")
    p.add_argument("--seed", type=int, default=7, help="which training questions, and the samplers' seed")
    args = p.parse_args(argv)
    library = StrategyLibrary.default()
    planner = PolicyPlanner.from_pretrained(args.planner, seed=args.seed)
    reasoner = HFReasoner.from_pretrained(args.reasoner, temperature=args.temperature, seed=args.seed)
    graph = build_graph(planner, reasoner, library, max_steps=8, max_step_tokens=96, max_total_tokens=1024)
    data = arith_dataset(args.n, seed=args.seed)
    questions = [q for q in data["prompt"] for _ in range(args.group)]
    golds = [a for a in data["solution"] for _ in range(args.group)]
    states = run_batch(graph, questions)
    rewards = [accuracy_reward([""], [g], step_texts=[[s["text"] for s in st["steps"]]])[0] for st, g in zip(states, golds, strict=True)]
    plans = [tuple(s["strategy"] for s in st["steps"]) for st in states]
    parts = decompose(rewards, plans, args.group)
    share = parts["same_sequence"] / parts["total"] if parts["total"] else 0.0
    # What each `reasoner_credit` hands the reasoner: the planner's part of its advantages, and the trajectories it
    # credits at all (a nonzero advantage on some token).
    lengths = [[len(s.get("prompt_ids") or []) + len(s.get("completion_ids") or []) for s in st["steps"]] for st in states]
    credits = {}
    for credit in CREDITS:
        adv = reasoner_advantages(torch.tensor(rewards), plans, args.group, credit=credit, step_lengths=lengths, width=max(map(sum, lengths)))
        credited = (adv.abs().view(len(rewards), -1).sum(1) > 0).float().mean().item()
        credits[credit] = {"between_plan_share": round(between_plan_share(adv, plans, args.group), 3), "credited": round(credited, 3)}
    return {"accuracy": sum(rewards) / len(rewards), **parts, "reasoner_share": round(share, 3), "credit": credits}


if __name__ == "__main__":
    from trainers.cli import print_report

    sys.exit(print_report(lambda: json.dumps(main())))
