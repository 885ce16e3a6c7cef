"""One run as a stream of `rsim_graph.events`, and the reply text built from them.

Every consumer answers through here (the CLI, `RSIMChatModel`, the server and evals), so a reply reads the
same whichever way it is reached. A run either goes through the graph (strategy injection) or, for A/B
comparison, asks the reasoner alone (`plain_events`). `Reply.follow` builds the reply as the events come.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

from langgraph.graph.state import CompiledStateGraph

from rsim_graph.events import Event, Finished, StepWritten, finished, step_written, strategy_chosen
from rsim_graph.scoring.grading import extract_answer
from rsim_graph.graph import release
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.state import RSIMState, Usage, usage, written_tokens


def graph_events(
    graph: CompiledStateGraph,
    inputs: RSIMState,
    reasoner: Reasoner,
    *,
    planner: Planner | None = None,
    cancel: threading.Event | None = None,
    config: dict | None = None,
) -> Iterator[Event]:
    """Run the graph, yielding its events as they happen. Once `cancel` is set, or the caller stops
    iterating, the run ends at its next node and the reasoner and the planner forget the trajectory (their
    prefix caches would otherwise stay until the LRU pushes them out: about 0.2 MB a dropped stream)."""
    trajectory_id, done = None, None
    seen: RSIMState = {"steps": [], "question_ids": None}  # what the run has written, for its usage so far
    try:
        # "updates", not "custom": custom events make LangGraph run every node on a helper thread,
        # which costs about 1 ms of CPU a step (measured). The events are built from the node updates
        # by the same functions the nodes write them with.
        for chunk in graph.stream(inputs, config, stream_mode="updates"):
            if cancel is not None and cancel.is_set():
                return
            for node, update in chunk.items():
                if node == "start":
                    trajectory_id = update.get("trajectory_id", trajectory_id)
                elif node == "inject":
                    yield strategy_chosen(len(seen["steps"]), update["pending"])
                elif node == "reason":
                    seen["question_ids"] = seen["question_ids"] or update.get("question_ids")
                    seen["steps"].append(update["steps"][0])
                    yield step_written(len(seen["steps"]) - 1, update["steps"][0], usage(seen))
                elif node == "check" and update:
                    done = update
        yield finished(done["answer"], done["stop_reason"], done["usage"], cut=bool(seen["steps"][-1].get("cut")))
    finally:
        if done is None and trajectory_id:
            release(trajectory_id, reasoner, planner)


def plain_events(reasoner: Reasoner, inputs: RSIMState, max_tokens: int) -> Iterator[Event]:
    """The reasoner alone, nothing injected: one step with the whole reply."""
    out = reasoner.complete(inputs["question"], max_tokens, history=inputs.get("history"), **(inputs.get("sampling") or {}))
    generated = written_tokens({"completion_ids": out.completion_ids, "written_tokens": (out.meta.get("usage") or {}).get("output_tokens")})
    if generated is None:  # a text-only backend that reports no usage: about 4 characters a token
        generated = len(out.text) // 4 + 1
    question = len(out.question_ids or [])
    yield StepWritten(0, None, False, out.text, Usage(prompt_tokens=question, injected_tokens=0, reasoner_tokens=generated, steps=1))
    cut = out.meta["finish_reason"] == "length" if out.meta.get("finish_reason") else generated >= max_tokens
    yield Finished(extract_answer(out.text), "max_tokens" if cut else "eos", cut, question, generated, question)


def run_events(
    graph: CompiledStateGraph, reasoner: Reasoner, inputs: RSIMState, *, injection: bool = True, max_tokens: int = 2048,
    cancel: threading.Event | None = None, config: dict | None = None, planner: Planner | None = None,
) -> Iterator[Event]:
    """A run's events: through the graph (with `config`, e.g. a checkpointed graph's `thread_id`), or
    (`injection=False`) the reasoner alone with `max_tokens`."""
    if not injection:
        return plain_events(reasoner, inputs, max_tokens)
    return graph_events(graph, inputs, reasoner, planner=planner, cancel=cancel, config=config)


class Reply:
    """One reply's text from step events: steps joined by the step delimiter, cut at the first stop
    sequence (`follow` then closes the run).

    Args:
        delimiter (`str`): what joins steps.
        stops (`list[str]`, *optional*): stop sequences.
    """

    def __init__(self, delimiter: str, stops: list[str] | None = None):
        self.delimiter = delimiter
        self.stops = stops or []
        self.content = ""
        self.steps: list[StepWritten] = []
        self.stopped = False  # a stop sequence was hit
        self.done: Finished | None = None
        self.spent: Usage | None = None  # the run's tokens as of its last step

    def follow(self, events: Iterator[Event]) -> Iterator[tuple[StepWritten, str]]:
        """Build the reply from `events`, yielding each step with the content delta it adds (empty when a stop
        sequence cut it to nothing). At a stop sequence, or when the caller stops iterating, the run is closed:
        it ends at its next node."""
        try:
            for event in events:
                if isinstance(event, Finished):
                    self.done = event
                elif isinstance(event, StepWritten):
                    self.spent = event.usage or self.spent
                    yield event, self.add(event)
                    if self.stopped:
                        return
        finally:
            events.close()

    def collect(self, events: Iterator[Event]) -> Reply:
        """Run `events` to their end (or the first stop sequence); returns this reply."""
        for _ in self.follow(events):
            pass
        return self

    def add(self, step: StepWritten) -> str:
        """Record a step; returns the content delta it adds. A step cut by a stop sequence keeps only the text
        before it in the trace, and a step cut to nothing is not recorded."""
        before = len(self.content)
        sep = self.delimiter if self.steps else ""
        self.content += sep + step.text
        hits = [i for i in (self.content.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.content = self.content[: min(hits)]
            self.stopped = True
            step = dataclasses.replace(step, text=self.content[before + len(sep) :])
        if step.text or not self.stopped:
            self.steps.append(step)
        return self.content[before:]

    @property
    def stop_reason(self) -> str:
        if self.stopped:
            return "stop_sequence"
        return self.done.stop_reason if self.done else "cancelled"

    @property
    def tokens(self) -> tuple[int, int, int]:
        """(question, prompt, completion) tokens as OpenAI's usage counts them: prompt is the question plus the
        injected strategy text. A run a stop sequence ended is billed for the steps it wrote."""
        if self.done:
            return self.done.question_tokens, self.done.prompt_tokens, self.done.completion_tokens
        if self.spent:
            s = self.spent
            return s["prompt_tokens"], s["prompt_tokens"] + s["injected_tokens"], s["reasoner_tokens"]
        return 0, 0, 0

    @property
    def finish_reason(self) -> str:
        """OpenAI's: "length" when the answer ran out of tokens, else "stop" (the rule that ended the run is `stop_reason`)."""
        return "length" if self.done and self.done.length and not self.stopped else "stop"

    def trace(self, injection: bool = True) -> dict:
        """The strategy trace: each step's strategy and text, the answer, why the run stopped."""
        return {
            "strategy_injection": injection,
            "steps": [{"strategy": s.strategy or "", "text": s.text, "forced": s.forced} for s in self.steps],
            "answer": self.done.answer if self.done else None,
            "stop_reason": self.stop_reason,
        }
