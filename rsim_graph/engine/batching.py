"""Micro-batching: concurrent trajectories share forward passes.

Each graph run is sequential (plan → inject → reason → check), but many runs go at once, one per
thread. Their planner and reasoner calls land here, wait for a short quiet gap, and are served by
one batched call. A run blocks on its own future, so node code stays plain and synchronous.

Every batched call of every batcher runs on one shared worker thread. Each OS thread that calls
into torch keeps its own OpenMP team, and on a small CPU two live teams slow each other down
(measured: a second idle batcher thread made batched rollouts 1.7x slower on 2 cores).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

logger = logging.getLogger(__name__)



class FairLock:
    """A lock granted in the order of `enqueue` calls.

    `threading.Lock` lets a releasing thread take it straight back, so a batcher that decodes token by
    token (`ContinuousBatcher`) would starve the planner's batches. A waiter keeps its place while it
    waits in slices (`wait(ticket, timeout)` returns False and may be called again).
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._held = False

    def enqueue(self) -> object:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        return ticket

    def wait(self, ticket: object, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._held or self._queue[0] is not ticket:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            self._queue.popleft()
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.wait(self.enqueue())
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ThreadPolicy:
    """Torch intra-op threads for the compute thread: all of them on a quiet machine, one while the CPU is contended.

    Each parallel op ends at a barrier that waits for all of the op's threads. When another process keeps
    the cores busy, one of ours is often descheduled, and every op waits for it: measured beside a busy
    torch process on 2 cores, rollouts on 2 threads ran at 0.30x their quiet speed (the load's fair share
    is 0.5x), on one thread at 0.81x. So each batch measures how long the compute thread waited for a
    core while runnable (the kernel's run delay; waiting on the GIL does not count, so the process's own
    Python threads do not trip it); above `1 - low` of the batch's time the policy drops to one thread,
    and it tries all
    threads again after `probe_s` seconds (doubled after each probe that finds the load still there, up to
    `16 * probe_s`).

    Args:
        low (`float`, *optional*, defaults to `0.8`): the share of a batch's time the compute thread must have been on
            a core (not waiting for one) for the machine to count as quiet.
        probe_s (`float`, *optional*, defaults to `2.0`): seconds on one thread before all threads are tried again.
        adaptive (`bool`, *optional*, defaults to `True`): False keeps torch's thread count as it is.
    """

    MIN_WALL_S = 0.002  # shorter batches say too little about the CPU they got

    def __init__(self, *, low: float = 0.8, probe_s: float = 2.0, adaptive: bool = True):
        self.low, self.probe_s, self.adaptive = low, probe_s, adaptive
        self.max_threads: int | None = None
        self.threads: int | None = None
        self.switches = 0  # for benchmarks: how often the thread count changed
        self._since = 0.0
        self._wait = probe_s

    def run(self, fn: Callable, *args):
        """`fn(*args)` on the calling thread (the compute thread), with the policy's thread count."""
        if not self.adaptive:
            return fn(*args)
        if self.max_threads is None:
            self.max_threads = self.threads = torch.get_num_threads()
        if self.max_threads == 1:
            return fn(*args)
        probing = self.threads < self.max_threads and time.monotonic() - self._since > self._wait
        if probing:
            self._set(self.max_threads)  # has the load gone?
        wall, delay = time.perf_counter(), _run_delay()
        try:
            return fn(*args)
        finally:
            wall, delay = time.perf_counter() - wall, _run_delay() - delay
            if wall > self.MIN_WALL_S and self.threads > 1:
                contended = delay > (1 - self.low) * wall
                if contended:
                    self._set(1)
                if probing:
                    self._wait = min(2 * self._wait, 16 * self.probe_s) if contended else self.probe_s

    def _set(self, n: int) -> None:
        torch.set_num_threads(n)
        self.threads, self._since = n, time.monotonic()
        self.switches += 1


def _run_delay() -> float:
    """Seconds the calling thread has spent runnable but off a core (Linux schedstat). Waiting on the GIL or a
    lock is sleeping, not this: only other work on the cores counts. Elsewhere: wall minus CPU time (either wait)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return time.perf_counter() - time.thread_time()


THREADS = ThreadPolicy()
_COMPUTE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsim-compute")
_COMPUTE_FREE = FairLock()  # held by the batch (or decode step) that is running on the compute thread

Req = TypeVar("Req")
Res = TypeVar("Res")


class MicroBatcher(Generic[Req, Res]):
    """Serve `fn(list[Req]) -> list[Res]` over requests that arrive one by one from many threads.

    Args:
        fn (`Callable[[list[Req]], list[Res]]`): the batched call; returns one result per request, in order.
        max_batch (`int`, *optional*, defaults to `64`): most requests in one call.
        gap_ms (`float`, *optional*, defaults to `4.0`): a batch closes once no new request came for this long.
    """

    def __init__(self, fn: Callable[[list[Req]], list[Res]], *, max_batch: int = 64, gap_ms: float = 4.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.max_batch = max_batch
        self.gap_s = gap_ms / 1000
        self.batch_sizes: list[int] = []  # for benchmarks and tests: how well requests were merged
        self._queue: queue.Queue[tuple[Req, Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, request: Req) -> Res:
        return self.submit(request).result()

    def submit(self, request: Req) -> Future:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rsim-microbatch", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            closed = self._gather(batch, self.gap_s)
            # While another batch holds the compute thread, keep admitting arrivals into this one:
            # under load, batches grow to whatever queued up instead of splitting into cohorts.
            ticket = _COMPUTE_FREE.enqueue()
            acquired = False
            while not closed and not (acquired := _COMPUTE_FREE.wait(ticket, self.gap_s)):
                closed = self._gather(batch, 0)
            if not acquired:
                _COMPUTE_FREE.wait(ticket)
            try:
                self._run(batch)
            finally:
                _COMPUTE_FREE.release()
            if closed:
                return

    def _gather(self, batch: list, wait_s: float) -> bool:
        """Add queued requests to `batch` until it is full or none came for `wait_s`; True once `close` was called."""
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False

    def _run(self, batch: list[tuple[Req, Future]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.batch_sizes.append(len(live))
        try:
            results = _COMPUTE.submit(THREADS.run, self.fn, [r for r, _ in live]).result()
        except BaseException as e:  # noqa: BLE001 - handed to every waiting caller, which re-raises it
            for _, f in live:
                f.set_exception(e)
            return
        for (_, f), res in zip(live, results, strict=True):
            f.set_result(res)


class ContinuousBatcher(MicroBatcher):
    """Serve requests with an engine whose rows enter and leave between decode steps.

    The engine (`SlotDecoder`) has `free`, `active`, `admit(items) -> done`, `step() -> done` and `abort()`,
    where `items` and `done` pair each request's future with its request or result. Each tick admits
    what arrived (up to the free slots) and decodes one token for every row, on the shared compute
    thread; between ticks the planner's batches take their turn (`FairLock`).
    `batch_sizes` records the rows of each decode step.
    """

    def __init__(self, engine, *, gap_ms: float = 4.0, max_wait_ticks: int = 8):
        super().__init__(None, max_batch=engine.max_slots, gap_ms=gap_ms)
        self.engine = engine
        self.max_wait_ticks = max_wait_ticks
        self._waited = 0

    def _loop(self) -> None:
        pending: list = []
        closed = False
        while True:
            if not pending and not self.engine.active:
                if closed:
                    return
                item = self._queue.get()
                if item is None:
                    return
                pending.append(item)
                closed = self._gather(pending, self.gap_s)  # a burst's first requests wait for the rest, as in MicroBatcher
            elif not closed:
                closed = self._gather(pending, 0)
            n = min(len(pending), self.engine.free) if self._admit_now(pending) else 0
            live = [(f, r) for r, f in pending[:n] if f.set_running_or_notify_cancel()]
            del pending[:n]
            with _COMPUTE_FREE:
                try:
                    done = _COMPUTE.submit(THREADS.run, self._tick, live).result()
                except BaseException as e:  # noqa: BLE001 - handed to every row's caller, which re-raises it
                    for f in [f for f, _ in live] + self.engine.abort():
                        if not f.done():
                            f.set_exception(e)
                    continue
            for f, res in done:
                f.set_result(res)

    def _admit_now(self, pending: list) -> bool:
        """Admit once enough requests wait to be worth a prefill pass of their own: each pass has a fixed cost,
        and on a CPU many small ones cost more than the rows gained. Nothing waits more than `max_wait_ticks`."""
        if not pending:
            return False
        self._waited += 1
        if not self.engine.active or 2 * len(pending) >= self.engine.active or self._waited > self.max_wait_ticks:
            self._waited = 0
            return True
        return False

    def _tick(self, live: list) -> list:
        done = self.engine.admit(live)
        if self.engine.active:
            self.batch_sizes.append(self.engine.active)
        return done + self.engine.step()
