"""The paper's "planner prompting" baseline: a chat model is asked to pick the next strategy."""

from __future__ import annotations

import logging
import re

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from rsim_graph.planners.base import Planner, PlannerChoice, planner_text
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary

logger = logging.getLogger(__name__)

SYSTEM = (
    "You direct a step-by-step solver. Before each of its steps you pick one reasoning strategy.\n"
    "Strategies:\n{menu}\n"
    "Reply with the strategy id only."
)


class PromptPlanner(Planner):
    """Ask a LangChain chat model for the next strategy.

    An unusable reply (no strategy id in it) falls back to `fallback`, and `fallbacks` counts how often.

    Args:
        model (`BaseChatModel`): any chat model.
        fallback (`str`, *optional*, defaults to `"deep-think"`): the strategy used when the reply names none;
            after `max_steps_hint` steps the terminating strategy is used instead, so a silent model still ends.
        max_steps_hint (`int`, *optional*, defaults to `8`).
    """

    def __init__(self, model: BaseChatModel, *, fallback: str = "deep-think", max_steps_hint: int = 8):
        self.model = model
        self.fallback = fallback
        self.max_steps_hint = max_steps_hint
        self.fallbacks = 0
        self.calls = 0

    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice:
        menu = "\n".join(f"- {s.id}: {s.description or s.name}" for s in library)
        messages = [SystemMessage(SYSTEM.format(menu=menu)), HumanMessage(planner_text(state))]
        reply = self.model.invoke(messages)
        self.calls += 1
        found = parse_strategy(str(reply.content), library)
        if found is None:
            self.fallbacks += 1
            n = len(state.get("steps", []))
            found = library.terminal_id if n >= self.max_steps_hint or self.fallback not in library else self.fallback
            logger.info("planner reply %r names no strategy; using %s", str(reply.content)[:80], found)
        return PlannerChoice(found)


def parse_strategy(reply: str, library: StrategyLibrary) -> str | None:
    """The first strategy id (or name) that appears in `reply` as a whole word.

    >>> parse_strategy("I'd go with Validate.", StrategyLibrary.default())
    'validate'
    """
    best: tuple[int, str] | None = None
    for s in library:
        for word in {s.id, s.name}:
            m = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", reply, flags=re.IGNORECASE)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), s.id)
    return best[1] if best else None
