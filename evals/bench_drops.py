"""`python -m evals.bench drops`: the server's memory over many streams that clients drop mid-way.

A client that reads a stream's first chunk and hangs up (a closed browser tab, a cancelled agent) must cost
the server nothing that stays: its run stops and its caches are freed. This starts `python -m server`, drops
`--drops` streams, then completes `--completed` streams for comparison, and prints the server's resident
memory (VmRSS) every `--every` drops and the growth per drop in each half: growth that falls to about zero in
the second half is memory that levels off (allocator pools, caches filled once), not a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from evals.bench_server import _free_port, _wait
from rsim_graph.tasks.arith import ArithWorld


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def drop_one(url: str, question: str) -> None:
    """Open a stream, read up to its first content delta, and hang up."""
    body = {"model": "rsim", "messages": [{"role": "user", "content": question}], "stream": True}
    with httpx.Client(base_url=url, timeout=120) as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                return


def complete_one(url: str, question: str) -> None:
    body = {"model": "rsim", "messages": [{"role": "user", "content": question}], "stream": True}
    with httpx.Client(base_url=url, timeout=120) as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        for _ in r.iter_lines():
            pass


def bench_drops(args: argparse.Namespace) -> str:
    questions = [p.question for p in ArithWorld(split="test").problems(64)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        _wait(url)
        for q in questions[:8]:  # warm-up: the first requests fill caches and pools once
            complete_one(url, q)
        marks = [(0, rss_mb(proc.pid))]
        for i in range(1, args.drops + 1):
            drop_one(url, questions[i % len(questions)])
            if i % args.every == 0:
                marks.append((i, rss_mb(proc.pid)))
        before = rss_mb(proc.pid)
        for i in range(args.completed):
            complete_one(url, questions[i % len(questions)])
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    half = len(marks) // 2
    first = (marks[half][1] - marks[0][1]) / max(1, marks[half][0] - marks[0][0])
    second = (marks[-1][1] - marks[half][1]) / max(1, marks[-1][0] - marks[half][0])
    lines = [
        f"dropped-stream bench: {args.drops} streams dropped after their first chunk, bundled models, loopback",
        "| drops | server RSS (MB) |",
        "|---|---|",
        *(f"| {n} | {mb:.0f} |" for n, mb in marks),
        f"growth per drop: {1000 * first:.0f} kB over drops 0-{marks[half][0]}, {1000 * second:.0f} kB over drops {marks[half][0]}-{marks[-1][0]}",
        f"{args.completed} completed streams after them: {before:.0f} -> {after:.0f} MB",
    ]
    return "\n".join(lines)


def add_parser(sub) -> None:
    d = sub.add_parser("drops", help="server memory over streams that clients drop mid-way", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--drops", type=int, default=1000, help="streams to drop")
    d.add_argument("--every", type=int, default=100, help="measure the server's memory every this many drops")
    d.add_argument("--completed", type=int, default=100, help="streams to complete afterwards, for comparison")
