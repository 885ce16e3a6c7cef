"""Group-relative advantages for both agents, and how the reasoner is credited (issue 23).

GRPO compares each trajectory with the other trajectories of its prompt. In rSIM two agents wrote a
trajectory: the planner chose the strategies, the reasoner wrote the steps. Measured on ArithWorld
(`python -m trainers.credit`), 88-94% of the within-group variance of R_acc lies between trajectories
that took different strategy sequences, i.e. comes from the planner; GRPO's plain group baseline hands
it all to the reasoner's tokens as advantage. `reasoner_advantages` offers three baselines:

- `group` (the paper's GRPO): the mean reward of the prompt's group;
- `plan`: the mean reward of the group's trajectories that took the same strategy sequence, so only
  what the reasoner's own sampling changed is credited to it; a trajectory whose plan no other
  trajectory of its group took gets 0 (nothing to compare its steps with);
- `prefix`: per step, the mean reward of the group's trajectories that took the same strategies up to
  and including that step (a per-token advantage): a step is credited with what followed it, given the
  plan so far; a step whose plan prefix no other trajectory shares gets 0.

Every option divides by the same scale as GRPO (`scale`: the group's std, the batch's, or 1), so only the
baseline differs.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from trl.trainer.utils import nanstd  # the std of the non-NaN values: an unscorable row must not spoil its group's scale

EPS = 1e-4  # TRL's, added to the std
SCALES = ("group", "batch", "none")
CREDITS = ("group", "plan", "prefix")
Plan = tuple[str, ...]  # one trajectory's strategy ids, in order


def reward_scale(rewards: torch.Tensor, group: int, scale: str) -> torch.Tensor:
    """The divisor of each row's advantage: its group's std (`group`), the batch's (`batch`) or 1 (`none`), plus EPS
    for the first two, NaN rows left out; shape `(N,)`."""
    if scale == "none":
        return torch.ones_like(rewards)
    if scale == "batch":
        return (nanstd(rewards) + EPS).expand_as(rewards) if rewards.numel() > 1 else torch.ones_like(rewards)
    if scale == "group":
        return (nanstd(rewards.view(-1, group), -1, keepdim=True) + EPS).expand(-1, group).reshape(-1)
    raise ValueError(f"scale={scale!r} is not one of {', '.join(SCALES)}")


def group_advantages(rewards: torch.Tensor, group: int, scale: str = "group") -> torch.Tensor:
    """GRPO's advantages: each reward minus the mean of its group of `group` consecutive rows, over `reward_scale`;
    NaN rows (unscorable) are left out of the mean and the scale, and get 0.

    >>> group_advantages(torch.tensor([1.0, 0.0, 3.0, 3.0]), 2, "none").tolist()
    [0.5, -0.5, 0.0, 0.0]
    """
    grouped = rewards.view(-1, group)  # (prompts, G)
    centred = (grouped - torch.nanmean(grouped, -1, keepdim=True)).reshape(-1)
    return torch.nan_to_num(centred / reward_scale(rewards, group, scale), nan=0.0)


def peer_baselines(rewards: list[float], keys: list, group: int) -> list[float | None]:
    """For each row, the mean reward of the rows of its group with the same key (itself included), or None when
    no other row of the group has its key. NaN rewards (unscorable rows) are nobody's peers.

    >>> peer_baselines([1.0, 0.0, 1.0, 5.0], ["a", "a", "b", "a"], 4)
    [2.0, 2.0, None, 2.0]
    """
    out: list[float | None] = []
    for start in range(0, len(rewards), group):
        peers: dict = defaultdict(list)
        for r, k in zip(rewards[start : start + group], keys[start : start + group], strict=True):
            if r == r:  # not NaN
                peers[k].append(r)
        out += [sum(peers[k]) / len(peers[k]) if len(peers[k]) > 1 else None for k in keys[start : start + group]]
    return out


def reasoner_advantages(
    rewards: torch.Tensor, plans: list[Plan], group: int, *, credit: str = "group", scale: str = "group",
    step_lengths: list[list[int]] | None = None, width: int | None = None,
) -> torch.Tensor:
    """The reasoner's advantages under `credit` (see the module docstring).

    Args:
        rewards (`torch.Tensor`): `(N,)` the reasoner's rewards, groups of `group` consecutive rows.
        plans (`list[Plan]`): each row's strategy sequence.
        credit (`str`, *optional*, defaults to `"group"`): `group`, `plan` or `prefix`.
        scale (`str`, *optional*, defaults to `"group"`): as TRL's `scale_rewards`.
        step_lengths (`list[list[int]]`, *optional*): with `prefix`, each row's tokens per step (injected and
            generated), in completion order.
        width (`int`, *optional*): with `prefix`, the padded completion length.

    Returns:
        `(N,)` for `group` and `plan`; `(N, width)` for `prefix` (0 past each row's last step).

    >>> reasoner_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), [("a",), ("a",), ("b",), ("c",)], 4, credit="plan", scale="none").tolist()
    [0.5, -0.5, 0.0, 0.0]
    """
    if credit not in CREDITS:
        raise ValueError(f"reasoner_credit={credit!r} is not one of {', '.join(CREDITS)}")
    if credit == "group":
        return group_advantages(rewards, group, scale)
    divisor = reward_scale(rewards, group, scale)
    r = rewards.tolist()

    def centred(keys: list) -> torch.Tensor:
        base = peer_baselines(r, keys, group)
        # NaN rows (unscorable) have no peers of their own and get 0, as in TRL.
        return torch.tensor([0.0 if b is None or x != x else x - b for x, b in zip(r, base, strict=True)], dtype=rewards.dtype, device=rewards.device)

    if credit == "plan":
        return centred([tuple(p) for p in plans]) / divisor
    if step_lengths is None or width is None:
        raise ValueError("credit='prefix' needs each row's step_lengths and the padded width")
    out = torch.zeros(len(r), width, dtype=rewards.dtype, device=rewards.device)
    for k in range(max(len(p) for p in plans)):
        # Rows with no step k have the key None; they get nothing written below.
        step = centred([tuple(p[: k + 1]) if k < len(p) else None for p in plans]) / divisor
        for i, lengths in enumerate(step_lengths):
            if k < len(lengths):
                start = sum(lengths[:k])
                out[i, start : start + lengths[k]] = step[i]
    return out


def between_plan_share(advantages: torch.Tensor, plans: list[Plan], group: int) -> float:
    """The share of the advantages' sum of squares that lies between the group's strategy sequences (the part
    that comes from the planner's choices): 0 when every advantage averages out within each plan. `(N, T)`
    per-token advantages are first averaged over each row's tokens.

    >>> between_plan_share(torch.tensor([0.5, 0.5, -0.5, -0.5]), [("a",), ("a",), ("b",), ("b",)], 4)
    1.0
    """
    a = advantages.float()
    if a.dim() == 2:
        a = a.sum(1) / (a != 0).sum(1).clamp(min=1)
    values = a.tolist()
    total = sum(x * x for x in values)
    if total == 0:
        return 0.0
    between = 0.0
    for start in range(0, len(values), group):
        by_plan: dict = defaultdict(list)
        for x, p in zip(values[start : start + group], plans[start : start + group], strict=True):
            by_plan[tuple(p)].append(x)
        between += sum(len(xs) * (sum(xs) / len(xs)) ** 2 for xs in by_plan.values())
    return between / total
