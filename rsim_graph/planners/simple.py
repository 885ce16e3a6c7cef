"""Planners without a learned policy: random, and a fixed script (Plan-and-Solve style)."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence

from rsim_graph.planners.base import Planner, PlannerChoice
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary


class RandomPlanner(Planner):
    """Uniform over the library (the paper's random-strategy baseline).

    A run whose state carries a sampling seed draws from that seed, its question and its step number,
    so batched runs give the same choices whatever order their threads reach the planner in.
    Otherwise choices come from one shared generator.

    Args:
        seed (`int`, *optional*): seeds the shared generator.
    """

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)
        self._lock = threading.Lock()

    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice:
        run_seed = (state.get("sampling") or {}).get("seed")
        if run_seed is not None:
            i = random.Random(f"{run_seed}|{state['question']}|{len(state.get('steps', []))}").randrange(len(library))
        else:
            with self._lock:
                i = self.rng.randrange(len(library))
        n = len(library)
        return PlannerChoice(library.ids[i], -math.log(n), [1.0 / n] * n)


class ScriptedPlanner(Planner):
    """A fixed sequence of strategies; the library's terminating strategy follows the last one.

    Args:
        sequence (`Sequence[str]`): strategy ids, one per step (empty: answer at once).
    """

    def __init__(self, sequence: Sequence[str]):
        self.sequence = list(sequence)

    @classmethod
    def plan_and_solve(cls, think_steps: int = 4) -> ScriptedPlanner:
        """Plan-and-Solve (PS+, Wang et al. 2023): understand, devise a plan, carry it out step by step."""
        return cls(["understand", "sub-plan"] + ["deep-think"] * think_steps)

    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice:
        i = len(state.get("steps", []))
        strategy = self.sequence[i] if i < len(self.sequence) else library.terminal_id
        return PlannerChoice(strategy)
