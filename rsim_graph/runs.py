"""One run as a stream of step events, and the reply text built from them.

The server and `RSIMChatModel` both answer through these, so a chat reply reads the same whichever
way it is reached. A run either goes through the graph (strategy injection) or, for A/B comparison,
asks the reasoner alone (`strategy_injection=False`).

Events:
- `("step", {"step", "strategy", "forced", "text"})` as each step is written;
- `("done", {"answer", "stop_reason", "length", "prompt_tokens", "completion_tokens"})` at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from langgraph.graph.state import CompiledStateGraph

from rsim_graph.grading import extract_answer
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.state import RSIMState

# (kind, payload): see the module docstring.
Event = tuple[str, dict]


def graph_events(
    graph: CompiledStateGraph,
    inputs: RSIMState,
    reasoner: Reasoner,
    *,
    cancel: threading.Event | None = None,
    config: dict | None = None,
) -> Iterator[Event]:
    """Run the graph, yielding step events as they happen. Once `cancel` is set, or the caller stops
    iterating, the run ends at its next node and the reasoner forgets the trajectory."""
    trajectory_id, done, n = None, None, 0
    try:
        # "updates", not "custom": custom events make LangGraph run every node on a helper thread,
        # which costs about 1 ms of CPU a step (measured); node updates carry all a reply needs.
        for chunk in graph.stream(inputs, config, stream_mode="updates"):
            if cancel is not None and cancel.is_set():
                return
            for node, update in chunk.items():
                if node == "plan":
                    trajectory_id = update.get("trajectory_id", trajectory_id)
                elif node == "reason":
                    step = update["steps"][0]
                    yield "step", {"step": n, "strategy": step["strategy"], "forced": step["forced"], "text": step["text"]}
                    n += 1
                elif node == "check" and update:
                    done = update
        usage = done["usage"]
        yield "done", {
            "answer": done["answer"],
            "stop_reason": done["stop_reason"],
            "length": done["stop_reason"] != "terminate",
            "prompt_tokens": usage["prompt_tokens"] + usage["injected_tokens"],
            "completion_tokens": usage["reasoner_tokens"],
        }
    finally:
        if done is None and trajectory_id:
            reasoner.release(trajectory_id)


def plain_events(reasoner: Reasoner, inputs: RSIMState, max_tokens: int) -> Iterator[Event]:
    """The reasoner alone, nothing injected: one step with the whole reply."""
    out = reasoner.complete(inputs["question"], max_tokens, history=inputs.get("history"), **(inputs.get("sampling") or {}))
    yield "step", {"step": 0, "strategy": None, "forced": False, "text": out.text}
    generated = len(out.completion_ids or [])
    yield "done", {
        "answer": extract_answer(out.text),
        "stop_reason": "max_tokens" if generated >= max_tokens else "eos",
        "length": generated >= max_tokens,
        "prompt_tokens": len(out.question_ids or []),
        "completion_tokens": generated,
    }


class Reply:
    """One reply's text from step events: steps joined by the step delimiter, cut at the first stop
    sequence (the caller then stops the run).

    Args:
        delimiter (`str`): what joins steps.
        stops (`list[str]`, *optional*): stop sequences.
    """

    def __init__(self, delimiter: str, stops: list[str] | None = None):
        self.delimiter = delimiter
        self.stops = stops or []
        self.content = ""
        self.steps: list[dict] = []
        self.stopped = False  # a stop sequence was hit
        self.done: dict | None = None

    def add(self, step: dict) -> str:
        """Record a step; returns the content delta it adds. A step cut by a stop sequence keeps only the text
        before it in the trace, and a step cut to nothing is not recorded."""
        before = len(self.content)
        sep = self.delimiter if self.steps else ""
        self.content += sep + step["text"]
        hits = [i for i in (self.content.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.content = self.content[: min(hits)]
            self.stopped = True
            step = {**step, "text": self.content[before + len(sep) :]}
        if step["text"] or not self.stopped:
            self.steps.append(step)
        return self.content[before:]

    @property
    def stop_reason(self) -> str:
        if self.stopped:
            return "stop_sequence"
        return self.done["stop_reason"] if self.done else "cancelled"

    @property
    def finish_reason(self) -> str:
        """OpenAI's: "length" when a budget ended the run, else "stop"."""
        return "length" if self.done and self.done["length"] and not self.stopped else "stop"

    def trace(self, injection: bool = True) -> dict:
        """The strategy trace: each step's strategy and text, the answer, why the run stopped."""
        return {
            "strategy_injection": injection,
            "steps": [{"strategy": s["strategy"] or "", "text": s["text"], "forced": s["forced"]} for s in self.steps],
            "answer": (self.done or {}).get("answer"),
            "stop_reason": self.stop_reason,
        }
