"""The graph's state: one trajectory of strategy-annotated steps.

A trajectory is the record both users and the trainer read. Token ids are kept exactly as the
reasoner produced them (never re-tokenized), so the trainer scores the very tokens that were sampled.
"""

from __future__ import annotations

import operator
from typing import Annotated

# typing_extensions' TypedDict: pydantic (graph.as_tool, input schemas) rejects typing's before Python 3.12.
from typing_extensions import TypedDict

# Why the graph stopped: the planner chose to, or a budget forced the terminating strategy.
StopReason = str  # "terminate" | "max_steps" | "max_total_tokens" | "repeat"


class Step(TypedDict, total=False):
    """One chain-of-thought step.

    strategy: the strategy id injected before the step.
    forced: True when the graph injected the terminating strategy because a budget ran out.
    injected: the injected strategy text.
    text: the reasoner's text for the step (without the step delimiter).
    planner_logprob: log-probability of `strategy` under the planner (None when forced or unknown).
    planner_probs: the planner's full distribution over the library, in library order.
    prompt_ids: token ids of `injected`, as added to the reasoner's context (masked out of its loss).
    completion_ids: token ids the reasoner generated (delimiter included when it was generated).
    logprobs: per-token log-probabilities of `completion_ids` under the sampling policy.
    written_tokens: tokens the reasoner wrote, as its upstream counted them (text-only backends that
        report usage, such as an OpenAI-compatible server); None when unknown.
    """

    strategy: str
    forced: bool
    injected: str
    text: str
    planner_logprob: float | None
    planner_probs: list[float] | None
    prompt_ids: list[int] | None
    completion_ids: list[int] | None
    logprobs: list[float] | None
    written_tokens: int | None
    cut: bool


class Usage(TypedDict):
    prompt_tokens: int  # the templated question
    injected_tokens: int  # strategy text the graph added
    reasoner_tokens: int  # tokens the reasoner generated
    steps: int


class Sampling(TypedDict, total=False):
    """Per-run reasoner sampling; unset keys keep the backend's own settings."""

    temperature: float
    top_p: float
    seed: int


class Budget(TypedDict, total=False):
    """Per-run limits; each can only tighten the graph's own (see `graph.Limits`)."""

    max_steps: int
    max_total_tokens: int


# An earlier chat turn the reasoner sees before the question: {"role": ..., "content": ...}.
ChatTurn = dict[str, str]


class RSIMState(TypedDict, total=False):
    question: str
    history: list[ChatTurn] | None  # system prompt and earlier turns, for the reasoner only
    sampling: Sampling | None
    budget: Budget | None
    trajectory_id: str  # key for per-trajectory backend state (the reasoner's prefix cache)
    question_ids: list[int] | None
    steps: Annotated[list[Step], operator.add]
    pending: Step | None
    answer: str | None
    stop_reason: StopReason | None
    usage: Usage


def written_tokens(step: Step) -> int | None:
    """Tokens the reasoner wrote in `step`: its completion ids, else its upstream's own count."""
    if step.get("completion_ids") is not None:
        return len(step["completion_ids"])
    return step.get("written_tokens")


def usage(state: RSIMState) -> Usage:
    steps = state.get("steps", [])
    return Usage(
        prompt_tokens=len(state.get("question_ids") or []),
        injected_tokens=sum(len(s.get("prompt_ids") or []) for s in steps),
        reasoner_tokens=sum(written_tokens(s) or 0 for s in steps),
        steps=len(steps),
    )


def completion_text(steps: list[Step], delimiter: str) -> str:
    """The reasoner's full assistant text: injected strategy text and step text, step after step."""
    return "".join(s["injected"] + s["text"] + delimiter for s in steps)


def build_completion(steps: list[Step]) -> tuple[list[int], list[int], list[float]]:
    """Concatenate a trajectory's tokens for training.

    Returns:
        `(completion_ids, mask, logprobs)`, all of one length: mask is 1 on tokens the reasoner
        generated and 0 on injected strategy text; logprobs is 0.0 on injected tokens.
    """
    ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float] = []
    for s in steps:
        injected = s.get("prompt_ids") or []
        generated = s.get("completion_ids") or []
        lp = s.get("logprobs") or [0.0] * len(generated)
        ids += injected + generated
        mask += [0] * len(injected) + [1] * len(generated)
        logprobs += [0.0] * len(injected) + list(lp)
    return ids, mask, logprobs
