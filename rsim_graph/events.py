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
    """The reasoner wrote step `step`. `strategy` is None for a reply without strategy injection. `usage`: the
    run's tokens so far, this step's included (a reply cut by a stop sequence is billed from it)."""

    step: int
    strategy: str | None
    forced: bool
    text: str
    usage: Usage | None = None


@dataclass(frozen=True)
class Finished:
    """The run ended. `length`: the answer itself ran out of tokens (OpenAI's finish_reason "length"); a run
    that a budget or the repeat rule ended with a whole answer is not cut. Tokens as OpenAI's usage counts them:
    `prompt_tokens` is the question's (`question_tokens`) plus the injected strategy text."""

    answer: str | None
    stop_reason: str
    length: bool
    prompt_tokens: int
    completion_tokens: int
    question_tokens: int = 0


# One event of a run, in the order StrategyChosen, StepWritten (per step), then Finished.
Event = StrategyChosen | StepWritten | Finished


def strategy_chosen(index: int, pending: Step) -> StrategyChosen:
    return StrategyChosen(index, pending["strategy"], pending["forced"], pending.get("planner_probs"))


def step_written(index: int, step: Step, usage: Usage | None = None) -> StepWritten:
    return StepWritten(index, step["strategy"], step["forced"], step["text"], usage)


def finished(answer: str | None, stop_reason: str, usage: Usage, *, cut: bool) -> Finished:
    return Finished(
        answer, stop_reason, cut, usage["prompt_tokens"] + usage["injected_tokens"], usage["reasoner_tokens"], usage["prompt_tokens"]
    )
