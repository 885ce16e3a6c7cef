"""ArithWorld's hand-written planner: knows the world's rules (the reference for what good planning reaches).

Understand the question, then compute every operation with `deep-think` (the one strategy that never
slips in the world's rules), then terminate. With `check=True` it also validates each result and,
when the check fails, has the reasoner re-derive it (`self-reflect`). On a question that is not from
ArithWorld it falls back to Plan-and-Solve.
"""

from __future__ import annotations

from rsim_graph.planners.base import Planner, PlannerChoice
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import parse_question


class HeuristicPlanner(Planner):
    """
    Args:
        check (`bool`, *optional*, defaults to `False`): validate after each operation, repair on failure.
    """

    def __init__(self, check: bool = False):
        self.check = check
        self.fallback = ScriptedPlanner.plan_and_solve()

    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice:
        parsed = parse_question(state["question"])
        if parsed is None:
            return self.fallback.choose(state, library)
        steps = state.get("steps", [])
        if not steps:
            return PlannerChoice("understand")
        last = steps[-1]
        if self.check and last["strategy"] == "deep-think":
            return PlannerChoice("validate")
        if self.check and last["strategy"] == "validate" and "fails" in last["text"]:
            return PlannerChoice("self-reflect")
        used = [s["strategy"] for s in steps]
        computed = used.count("deep-think") - used.count("backtrack")
        return PlannerChoice("deep-think" if computed < len(parsed[1]) else library.terminal_id)
