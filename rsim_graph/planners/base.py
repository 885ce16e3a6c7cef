"""The planner protocol: given the trajectory so far, pick the next strategy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rsim_graph.safety import defuse_markers
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary


@dataclass
class PlannerChoice:
    """A planner's decision.

    Args:
        strategy (`str`): a strategy id of the library.
        logprob (`float`, *optional*): log-probability of the choice (None for planners without a policy).
        probs (`list[float]`, *optional*): the full distribution over the library, in library order.
    """

    strategy: str
    logprob: float | None = None
    probs: list[float] | None = None


@runtime_checkable
class Planner(Protocol):
    """What the graph asks of a planner. Subclass it to inherit the no-op `release` (rule-based planners keep
    nothing per trajectory); a learned planner that caches a trajectory's prefix frees it there."""

    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice: ...

    def release(self, trajectory_id: str) -> None:
        """Forget what is kept for a trajectory once it has ended (or was left mid-way)."""
        return None


def planner_text(state: RSIMState, max_step_chars: int = 200) -> str:
    """How a learned planner reads a trajectory: the question, then each step as `[strategy] text`.

    Brackets in the question and step texts are defused, so only the graph writes step markers.
    """
    lines = [defuse_markers(state["question"].strip())]
    for s in state.get("steps", []):
        lines.append(f"[{s['strategy']}] {defuse_markers(s['text'][-max_step_chars:])}")
    return "\n".join(lines) + "\n[next]"
