"""The reasoner protocol: write one step of reasoning after an injected strategy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rsim_graph.state import ChatTurn, Step


@dataclass
class StepRequest:
    """What the graph asks a reasoner for.

    Args:
        question (`str`): the user's question.
        steps (`list[Step]`): the steps written so far.
        strategy (`str`): id of the injected strategy.
        injected (`str`): the strategy text to add to the context before the step.
        max_new_tokens (`int`): token budget for this step.
        delimiter (`str`): text that ends a step (and joins written steps in the context).
        trajectory_id (`str`, *optional*): stable key of the trajectory, for prefix-cache reuse.
        question_ids (`list[int]`, *optional*): the templated question's ids from an earlier step.
        history (`list[ChatTurn]`, *optional*): chat turns before the question (system prompt, earlier turns).
        temperature, top_p, seed (*optional*): per-run sampling; None keeps the backend's own.
        stop_at_delimiter (`bool`, *optional*, defaults to `True`): False for the terminating step, which
            ends at EOS or its token budget, so a chat model's final answer is not cut at its first paragraph.
    """

    question: str
    steps: list[Step]
    strategy: str
    injected: str
    max_new_tokens: int
    delimiter: str
    trajectory_id: str = ""
    question_ids: list[int] | None = None
    history: list[ChatTurn] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop_at_delimiter: bool = True


@dataclass
class StepOutput:
    """A reasoner's step. Token fields are None for backends that do not expose tokens."""

    text: str
    question_ids: list[int] | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Reasoner(Protocol):
    def step(self, request: StepRequest) -> StepOutput: ...

    def complete(self, question: str, max_new_tokens: int, **options) -> StepOutput:
        """The reasoner alone (the ZeroCoT baseline): answer with nothing injected.
        `options` are `StepRequest` fields: `history`, `temperature`, `top_p`, `seed`."""
        ...

    def release(self, trajectory_id: str) -> None:
        """Forget per-trajectory state (such as a cached prefix) once the trajectory has ended."""
        ...
