"""Continuous batching (rsim_graph/reasoners/slots.py): rows join and leave between tokens, with the static batches' results."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_hf_reasoner import as_step, request

from rsim_graph.engine.batching import FairLock
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.reasoners.slots import SlotDecoder


@pytest.fixture
def pair(tiny_lm, tokenizer):
    return HFReasoner(tiny_lm, tokenizer, temperature=0.0, continuous=True), HFReasoner(tiny_lm, tokenizer, temperature=0.0)


def same(a, b):
    assert a.completion_ids == b.completion_ids
    assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


def test_rows_of_different_lengths_and_caches_match_static_batches(pair, library):
    cont, static = pair
    first = [request(library, i, max_new=2 + 5 * i) for i in range(4)]
    outs = [r.generate_batch(first) for r in pair]
    for a, b in zip(*outs, strict=True):
        same(a, b)
    # Second steps read the first steps' prefix caches; a fresh trajectory (no cache) shares the batch.
    second = [request(library, i, [as_step(first[i], outs[0][i])], "validate", max_new=4 + 3 * i) for i in range(4)]
    second.append(request(library, 9, max_new=12))
    for a, b in zip(cont.generate_batch(second), static.generate_batch(second), strict=True):
        same(a, b)
    assert cont.cache.keys() == static.cache.keys() == {"t0", "t1", "t2", "t3", "t9"}


def test_requests_join_a_batch_that_is_decoding(pair, library):
    cont, static = pair
    reqs = [request(library, i, max_new=30) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(cont.step, reqs[0])]
        time.sleep(0.05)  # the first row is decoding when the others arrive
        futures += [pool.submit(cont.step, r) for r in reqs[1:]]
        results = [f.result(timeout=60) for f in futures]
    for a, r in zip(results, reqs, strict=True):
        same(a, static.generate_batch([r])[0])
    sizes = cont.batcher.batch_sizes
    assert sizes[0] == 1 and max(sizes) > 1, sizes  # one row decoded alone, then others joined it


def test_more_requests_than_slots_wait_for_a_free_one(tiny_lm, tokenizer, library):
    cont = HFReasoner(tiny_lm, tokenizer, temperature=0.0, continuous=True, max_batch=2)
    static = HFReasoner(tiny_lm, tokenizer, temperature=0.0)
    reqs = [request(library, i, max_new=3 + 4 * i) for i in range(5)]
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(cont.step, reqs, timeout=60))
    for a, r in zip(results, reqs, strict=True):
        same(a, static.generate_batch([r])[0])
    assert max(cont.batcher.batch_sizes) == 2
    assert len(cont.batcher.engine.rows) == 2  # never more slots than max_batch


def test_rows_move_down_when_the_range_read_is_half_empty(pair, library):
    cont, static = pair
    reqs = [request(library, i, max_new=40 if i == 5 else 2) for i in range(6)]
    decoder = SlotDecoder(cont, 8)
    done = decoder.admit(list(enumerate(reqs)))
    highest = []
    while decoder.active:
        done += decoder.step()
        highest.append(max(s for s, row in enumerate(decoder.rows) if row is not None) if decoder.active else -1)
    assert 0 in highest  # the long row moved from slot 5 to slot 0
    for (i, a), b in zip(sorted(done, key=lambda d: d[0]), static.generate_batch(reqs), strict=True):
        same(a, b)


def test_a_failed_step_fails_its_rows_and_the_batcher_goes_on(pair, library, monkeypatch):
    cont, _ = pair
    engine = cont.batcher.engine
    real = engine.step
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return real()

    monkeypatch.setattr(engine, "step", flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        cont.step(request(library, 1, max_new=5))
    assert engine.active == 0
    assert len(cont.step(request(library, 2, max_new=5)).completion_ids) >= 1


def test_fair_lock_grants_in_arrival_order():
    lock, order = FairLock(), []
    lock.wait(lock.enqueue())
    tickets = [lock.enqueue() for _ in range(3)]

    def take(i):
        while not lock.wait(tickets[i], timeout=0.01):  # waiting in slices keeps the place in line
            pass
        order.append(i)
        lock.release()

    threads = [threading.Thread(target=take, args=(i,)) for i in (2, 0, 1)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    lock.release()
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 1, 2]


def test_thread_policy_drops_to_one_thread_under_contention_and_probes_back(monkeypatch):
    from rsim_graph.engine import batching as batching

    calls = []
    monkeypatch.setattr(batching.torch, "set_num_threads", calls.append)
    monkeypatch.setattr(batching.torch, "get_num_threads", lambda: 2)
    waited = {"s": 0.0}  # the kernel's run delay of the compute thread, faked
    monkeypatch.setattr(batching, "_run_delay", lambda: waited["s"])
    policy = batching.ThreadPolicy(probe_s=0.05)

    def on_core():
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:
            pass
        return "b"

    def descheduled():  # most of the time spent runnable but off a core, as when another process holds the cores
        on_core()
        waited["s"] += 0.015
        return "a"

    assert policy.run(on_core) == "b" and policy.threads == 2 and calls == []  # quiet: all threads, nothing set
    assert policy.run(descheduled) == "a" and policy.threads == 1 and calls == [1]
    policy.run(on_core)
    assert policy.threads == 1  # no probe before probe_s
    time.sleep(0.06)
    policy.run(descheduled)  # the probe finds the load still there: back to one thread, and probes less often
    assert calls == [1, 2, 1] and policy._wait == 0.1
    time.sleep(0.11)
    policy.run(on_core)  # the load is gone: all threads again
    assert calls == [1, 2, 1, 2] and policy.threads == 2 and policy._wait == 0.05
    assert batching.ThreadPolicy(adaptive=False).run(descheduled) == "a" and calls == [1, 2, 1, 2]
