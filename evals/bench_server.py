"""`python -m evals.bench server`: the OpenAI-compatible server on loopback, on the bundled models.

- requests/s and p50/p99 latency at concurrency 1, 8 and 32 (closed loop: each client sends its next
  request when the last one returns);
- the server's p50 latency at concurrency 1 against the same requests run in process through the
  same graph (`rsim_graph.runs`, as the server's workers), without HTTP; each request is timed both ways back to back.

The server runs in its own process (`python -m server`), the load generator in this one, both on
the same machine. Requests are greedy ArithWorld test questions, so both sides do the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import httpx

from rsim_graph.tasks.arith import ArithWorld


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: the server at {url} did not become healthy in {timeout:.0f} s")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def _load(url: str, questions: list[str], concurrency: int, max_tokens: int) -> tuple[float, list[float]]:
    """Send every question with `concurrency` clients; returns (wall seconds, per-request latencies)."""
    queue: asyncio.Queue = asyncio.Queue()
    for q in questions:
        queue.put_nowait(q)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            q = queue.get_nowait()
            t = time.perf_counter()
            r = await http.post("/v1/chat/completions", json={"model": "rsim", "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


def overhead_pairs(url: str, questions: list[str], max_tokens: int) -> list[tuple[float, float]]:
    """(server, in process) seconds for each question, the two taken back to back so that drifts in
    machine speed hit both alike. In process runs the same graph through `rsim_graph.runs`, as the server's workers do."""
    from server.engine import load_backend
    from server.settings import ServerSettings

    backend = load_backend(ServerSettings())

    def local(q: str) -> None:
        backend.reply(q, max_tokens=max_tokens, budget={"max_total_tokens": max_tokens})

    body = {"model": "rsim", "max_tokens": max_tokens}
    with httpx.Client(base_url=url, timeout=600) as http:
        for q in questions[:2]:  # warm-up
            local(q)
            http.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": q}]}).raise_for_status()
        pairs = []
        for q in questions:
            t = time.perf_counter()
            http.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": q}]}).raise_for_status()
            t_server = time.perf_counter() - t
            t = time.perf_counter()
            local(q)
            pairs.append((t_server, time.perf_counter() - t))
    return pairs


def bench_server(args: argparse.Namespace) -> str:
    """Run the benchmark; returns the report (the bench CLI prints it)."""
    # Each level sends at least 8 requests per client, so the ramp-down at the end (when fewer than
    # `c` requests are left) does not dominate the wall time: the figure is steady-state throughput.
    per_level = {c: max(args.requests, 8 * c) for c in args.concurrency}
    questions = [p.question for p in ArithWorld(split="test").problems(max(per_level.values()))]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--max_concurrent_requests", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"},
    )
    try:
        _wait(url)
        asyncio.run(_load(url, questions[:4], 4, args.max_tokens))  # warm-up
        rows = []
        for c in args.concurrency:
            wall, lat = asyncio.run(_load(url, questions[: per_level[c]], c, args.max_tokens))
            rows.append((c, per_level[c], per_level[c] / wall, statistics.median(lat), _pct(lat, 0.99)))
        pairs = overhead_pairs(url, questions[: args.compare], args.max_tokens)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lines = [
        f"server bench: ArithWorld test questions, bundled models, loopback, {os.cpu_count()} CPU cores",
        "| concurrency | requests | requests/s | p50 latency (s) | p99 latency (s) |",
        "|---|---|---|---|---|",
        *(f"| {c} | {n} | {rps:.2f} | {p50:.3f} | {p99:.3f} |" for c, n, rps, p50, p99 in rows),
    ]
    by_c = {c: (rps, p50) for c, _, rps, p50, _ in rows}
    server_p50, local_p50 = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    lines.append(
        f"concurrency 1, {len(pairs)} requests each sent to the server and run in process back to back: "
        f"p50 {server_p50:.3f} s vs {local_p50:.3f} s -> overhead {100 * (server_p50 / local_p50 - 1):+.1f}% (goal <= 10%)"
    )
    if 1 in by_c and max(by_c) > 1:
        top = max(by_c)
        lines.append(f"throughput at concurrency {top} = {by_c[top][0] / by_c[1][0]:.2f}x concurrency 1 (goal >= 6x)")
    return "\n".join(lines)


def add_parser(sub) -> None:
    s = sub.add_parser("server", help="server requests/s and latency at several concurrencies; overhead vs in process", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--requests", type=int, default=64, help="requests per concurrency level (at least 8 per client)")
    s.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="client concurrency levels")
    s.add_argument("--compare", type=int, default=32, help="requests timed in process for the overhead figure")
    s.add_argument("--max_tokens", type=int, default=512, help="each request's max_tokens (the bundled reasoner reads 1,024 positions, the question included)")
