"""Runs chat requests on the rSIM graph.

- Admission: at most `max_concurrent_requests` generate at once and `max_queue` more wait; beyond
  that a request is refused at once (429) rather than queued without bound.
- Each choice is one graph run on a worker thread. Runs block on the planner's and reasoner's
  micro-batchers, so concurrent requests share batched forward passes.
- A run stops at its next node once its consumer goes away (client disconnect, timeout, a stop
  sequence, shutdown), and frees the reasoner's cache for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from langgraph.graph.state import CompiledStateGraph

from rsim_graph.grading import extract_answer
from rsim_graph.graph import build_graph
from rsim_graph.loading import load_planner, load_reasoner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.state import Budget, ChatTurn, Sampling
from rsim_graph.strategies import StrategyLibrary, load_strategies
from server.settings import ServerSettings

logger = logging.getLogger(__name__)

# ("step", {"step", "strategy", "forced", "text"}) as each step is written, then
# ("done", {"answer", "stop_reason", "length", "prompt_tokens", "completion_tokens"}).
Event = tuple[str, dict]


class Busy(Exception):
    """The queue is full."""


@dataclass
class Backend:
    """What the server runs: the compiled graph, and its reasoner and library."""

    graph: CompiledStateGraph
    reasoner: Reasoner
    library: StrategyLibrary


def load_backend(settings: ServerSettings) -> Backend:
    library = load_strategies(settings.strategies)
    planner = load_planner(settings.planner, library, greedy=not settings.sample_planner, seed=0)
    reasoner = load_reasoner(
        settings.reasoner,
        base_url=settings.reasoner_base_url,
        model_name=settings.reasoner_model,
        api_key=settings.reasoner_api_key,
        mode=settings.reasoner_mode,
        temperature=settings.temperature,
        seed=0,
    )
    graph = build_graph(
        planner,
        reasoner,
        library,
        max_steps=settings.max_steps,
        max_step_tokens=settings.max_step_tokens,
        max_total_tokens=settings.max_tokens,
    )
    return Backend(graph, reasoner, library)


@dataclass
class Job:
    """One choice of one request."""

    question: str
    history: list[ChatTurn] = field(default_factory=list)
    sampling: Sampling = field(default_factory=dict)
    budget: Budget = field(default_factory=dict)
    injection: bool = True
    max_tokens: int = 2048


def run_job(backend: Backend, job: Job, cancel: threading.Event) -> Iterator[Event]:
    """Run one choice synchronously, yielding its events; returns early once `cancel` is set."""
    if not job.injection:
        out = backend.reasoner.complete(job.question, job.max_tokens, history=job.history, **job.sampling)
        yield "step", {"step": 0, "strategy": None, "forced": False, "text": out.text}
        generated = len(out.completion_ids or [])
        yield "done", {
            "answer": extract_answer(out.text),
            "stop_reason": "max_tokens" if generated >= job.max_tokens else "eos",
            "length": generated >= job.max_tokens,
            "prompt_tokens": len(out.question_ids or []),
            "completion_tokens": generated,
        }
        return
    inputs = {"question": job.question, "history": job.history, "sampling": job.sampling, "budget": job.budget}
    final: dict = {}
    forced = False
    try:
        for mode, chunk in backend.graph.stream(inputs, stream_mode=["custom", "values"]):
            if cancel.is_set():
                return
            if mode == "values":
                final = chunk
            elif chunk["event"] == "strategy":
                forced = chunk["forced"]
            elif chunk["event"] == "step":
                yield "step", {**chunk, "forced": forced}
        usage = final["usage"]
        yield "done", {
            "answer": final["answer"],
            "stop_reason": final["stop_reason"],
            "length": final["stop_reason"] != "terminate",
            "prompt_tokens": usage["prompt_tokens"] + usage["injected_tokens"],
            "completion_tokens": usage["reasoner_tokens"],
        }
    finally:
        if final.get("answer") is None and final.get("trajectory_id"):
            backend.reasoner.release(final["trajectory_id"])


class Engine:
    """Admission control and async access to `run_job`.

    Args:
        backend (`Backend`): what runs the requests.
        settings (`ServerSettings`): the caps.
        on_strategy (`Callable[[str], None]`, *optional*): called with each step's strategy id (metrics).
    """

    def __init__(self, backend: Backend, settings: ServerSettings, on_strategy: Callable[[str], None] | None = None):
        self.backend = backend
        self.settings = settings
        self.on_strategy = on_strategy or (lambda s: None)
        self.running = 0
        self.waiting = 0
        self.backend_error: str | None = None  # the last backend failure, until a run succeeds again
        self._slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self._cancels: set[threading.Event] = set()
        # A thread per live trajectory: each spends its time blocked on a micro-batcher.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_requests * min(settings.max_n, 8), thread_name_prefix="rsim-run"
        )

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.running + self.waiting >= self.settings.max_concurrent_requests + self.settings.max_queue:
            raise Busy
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()

    async def events(self, job: Job) -> AsyncIterator[Event]:
        """Run `job` on a worker thread and yield its events as they happen. Leaving the loop early
        (or being cancelled) stops the run."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        self._cancels.add(cancel)

        def work() -> None:
            try:
                for event in run_job(self.backend, job, cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as e:  # noqa: BLE001 - re-raised on the event loop below
                loop.call_soon_threadsafe(queue.put_nowait, ("error", e))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        self._pool.submit(work)
        try:
            while (event := await queue.get()) is not None:
                if event[0] == "error":
                    raise event[1]
                if event[0] == "step" and event[1]["strategy"]:
                    self.on_strategy(event[1]["strategy"])
                yield event
        finally:
            cancel.set()
            self._cancels.discard(cancel)

    def close(self) -> None:
        """Stop every live run at its next node (shutdown)."""
        for cancel in list(self._cancels):
            cancel.set()


class Reply:
    """Builds one choice's content from step events: steps joined by the step delimiter, cut at the
    first stop sequence (which then ends the run).

    Args:
        delimiter (`str`): what joins steps.
        stops (`list[str]`): the request's stop sequences.
    """

    def __init__(self, delimiter: str, stops: list[str]):
        self.delimiter = delimiter
        self.stops = stops
        self.content = ""
        self.steps: list[dict] = []
        self.stopped = False  # a stop sequence was hit
        self.done: dict | None = None

    def add(self, step: dict) -> str:
        """Record a step; returns the content delta to send."""
        self.steps.append(step)
        before = len(self.content)
        self.content += (self.delimiter if self.steps[:-1] else "") + step["text"]
        hits = [i for i in (self.content.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.content = self.content[: min(hits)]
            self.stopped = True
        return self.content[before:]

    @property
    def finish_reason(self) -> str:
        if self.stopped or not self.done:
            return "stop"
        return "length" if self.done["length"] else "stop"
