"""The events of one run: the only vocabulary the graph emits and that its consumers read.

The graph's nodes write them to LangGraph's custom stream (`graph.stream(..., stream_mode="custom")`), and
`runs.graph_events` derives the same events from node updates (the cheaper stream). The CLI, `RSIMChatModel`,
the server and evals read them through `rsim_graph.runs`, where `Reply` builds the answer text from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsim_graph.state import Step, Usage


@dataclass(frozen=True)
class StrategyChosen:
    """The planner (or a budget) picked step `step`'s strategy. `probs`: the planner's distribution, in library order."""

    step: int
    strategy: str
    forced: bool
    probs: list[float] | None = None


@dataclass(frozen=True)
class StepWritten:
    """The reasoner wrote step `step`. `strategy` is None for a reply without strategy injection."""

    step: int
    strategy: str | None
    forced: bool
    text: str


@dataclass(frozen=True)
class Finished:
    """The run ended. `length`: a budget ended it, not the planner; tokens as OpenAI's usage counts them."""

    answer: str | None
    stop_reason: str
    length: bool
    prompt_tokens: int
    completion_tokens: int


# One event of a run, in the order StrategyChosen, StepWritten (per step), then Finished.
Event = StrategyChosen | StepWritten | Finished


def strategy_chosen(index: int, pending: Step) -> StrategyChosen:
    return StrategyChosen(index, pending["strategy"], pending["forced"], pending.get("planner_probs"))


def step_written(index: int, step: Step) -> StepWritten:
    return StepWritten(index, step["strategy"], step["forced"], step["text"])


def finished(answer: str | None, stop_reason: str, usage: Usage) -> Finished:
    return Finished(
        answer, stop_reason, stop_reason != "terminate", usage["prompt_tokens"] + usage["injected_tokens"], usage["reasoner_tokens"]
    )
