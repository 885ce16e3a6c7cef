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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rsim_graph.events import StepWritten
from rsim_graph.loading import Runtime, load_runtime
from rsim_graph.runs import Reply
from rsim_graph.state import Budget, ChatTurn, Sampling
from server.settings import ServerSettings

logger = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full."""


def load_backend(settings: ServerSettings) -> Runtime:
    """The runtime the server's settings name (its `RuntimeConfig` flags)."""
    return load_runtime(settings.runtime())


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


class Engine:
    """Admission control and async access to runs (`Runtime.events`, `runs.Reply.follow`).

    Args:
        backend (`Runtime`): what runs the requests.
        settings (`ServerSettings`): the caps.
        on_strategy (`Callable[[str], None]`, *optional*): called with each step's strategy id (metrics).
    """

    def __init__(self, backend: Runtime, settings: ServerSettings, on_strategy: Callable[[str], None] | None = None):
        self.backend = backend
        self.settings = settings
        self.on_strategy = on_strategy or (lambda s: None)
        self.running = 0
        self.waiting = 0
        self.backend_error: str | None = None  # the last backend failure, until a run succeeds again
        # A request's max_tokens cap: the server's, but never above the reasoner's context window, which no request could fill.
        window = getattr(backend.reasoner, "context_window", lambda: None)()
        self.max_total_tokens = min(settings.max_total_tokens, window or settings.max_total_tokens)
        if self.max_total_tokens < settings.max_total_tokens:
            logger.info("max_tokens capped at %d, the reasoner's context window (--max_total_tokens %d)", window, settings.max_total_tokens)
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

    def reply(self, job: Job) -> Reply:
        """An empty reply for `job`, for `events` to fill."""
        return Reply(self.backend.library.step_delimiter, job.stops)

    async def events(self, job: Job, reply: Reply) -> AsyncIterator[tuple[StepWritten, str]]:
        """Run `job` on a worker thread, building `reply` there (`Reply.follow`), and yield each step with the
        content delta it adds as it happens; `reply` is complete once the loop ends. A stop sequence ends the
        run on the worker itself, so no step is written past it; leaving the loop early (or being cancelled)
        stops it at its next node."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        self._cancels.add(cancel)

        def work() -> None:
            try:
                events = self.backend.events(
                    job.question, strategy_injection=job.injection, max_tokens=job.max_tokens, cancel=cancel,
                    history=job.history, sampling=job.sampling, budget=job.budget,
                )
                for step, delta in reply.follow(events):
                    loop.call_soon_threadsafe(queue.put_nowait, (step, delta))
            except BaseException as e:  # noqa: BLE001 - re-raised on the event loop below
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        self._pool.submit(work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if item[0].strategy:
                    self.on_strategy(item[0].strategy)
                yield item
        finally:
            cancel.set()
            self._cancels.discard(cancel)

    def close(self) -> None:
        """Stop every live run at its next node (shutdown)."""
        for cancel in list(self._cancels):
            cancel.set()
