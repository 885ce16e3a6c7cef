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

from rsim_graph.loading import load_runtime
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.runs import Event, Reply, graph_events, plain_events
from rsim_graph.state import Budget, ChatTurn, Sampling
from rsim_graph.strategies import StrategyLibrary
from server.settings import ServerSettings

logger = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full."""


@dataclass
class Backend:
    """What the server runs: the compiled graph, and its reasoner and library."""

    graph: CompiledStateGraph
    reasoner: Reasoner
    library: StrategyLibrary


def load_backend(settings: ServerSettings) -> Backend:
    return Backend(
        *load_runtime(
            planner=settings.planner,
            reasoner=settings.reasoner,
            strategies=settings.strategies,
            greedy=not settings.sample_planner,
            base_url=settings.reasoner_base_url,
            model_name=settings.reasoner_model,
            api_key=settings.reasoner_api_key,
            mode=settings.reasoner_mode,
            temperature=settings.temperature,
            max_steps=settings.max_steps,
            max_step_tokens=settings.max_step_tokens,
            max_total_tokens=settings.max_tokens,
            injection=settings.injection,
        )
    )


@dataclass
class Job:
    """One choice of one request."""

    question: str
    history: list[ChatTurn] = field(default_factory=list)
    sampling: Sampling = field(default_factory=dict)
    budget: Budget = field(default_factory=dict)
    injection: bool = True
    max_tokens: int = 2048
    stops: list[str] = field(default_factory=list)


def run_job(backend: Backend, job: Job, cancel: threading.Event) -> Iterator[Event]:
    """Run one choice synchronously, yielding its events; returns early once `cancel` is set."""
    inputs = {"question": job.question, "history": job.history, "sampling": job.sampling, "budget": job.budget}
    if not job.injection:
        return plain_events(backend.reasoner, inputs, job.max_tokens)
    return graph_events(backend.graph, inputs, backend.reasoner, cancel=cancel)


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

    def full(self) -> bool:
        return self.running + self.waiting >= self.settings.max_concurrent_requests + self.settings.max_queue

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.full():
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
        """Run `job` on a worker thread and yield its events as they happen: `("step", event)` with the
        content `delta` it adds, then `("reply", Reply)`. A stop sequence ends the run on the worker
        itself, so no step is written past it; leaving the loop early (or being cancelled) stops it
        at its next node."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        self._cancels.add(cancel)

        def work() -> None:
            reply = Reply(self.backend.library.step_delimiter, job.stops)
            try:
                events = run_job(self.backend, job, cancel)
                for kind, event in events:
                    if kind == "done":
                        reply.done = event
                        continue
                    loop.call_soon_threadsafe(queue.put_nowait, ("step", {**event, "delta": reply.add(event)}))
                    if reply.stopped:
                        events.close()
                        break
                loop.call_soon_threadsafe(queue.put_nowait, ("reply", reply))
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
