"""Helpers for the server tests: a backend from fakes, and a live uvicorn server on a loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import uvicorn

from rsim_graph import Runtime, RuntimeConfig, load_runtime
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.strategies import StrategyLibrary
from server.app import create_app
from server.settings import ServerSettings


def fake_backend(reasoner, plan=("understand", "deep-think"), *, max_steps: int = 12, max_step_tokens: int = 32) -> Runtime:
    config = RuntimeConfig(max_reasoning_steps=max_steps, max_step_tokens=max_step_tokens, injection="prefill")  # the fakes' format
    return load_runtime(config, planner=ScriptedPlanner(list(plan)), reasoner=reasoner, library=StrategyLibrary.default())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, port: int | None = None, read_timeout: float = 30.0):
    """Serve `app` with uvicorn on a thread, as `python -m server` does; yields the base URL (`http://127.0.0.1:PORT`)."""
    from server.http import timed_h11

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5, http=timed_h11(read_timeout))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, allow_loading=True)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_healthy(url: str, timeout: float = 120, allow_loading: bool = False, path: str = "/health") -> None:
    """Wait until the server answers `path` (with 200, or any status when `allow_loading`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(f"{url}{path}", timeout=2)
            if r.status_code == 200 or allow_loading:
                return
        time.sleep(0.1)
    raise TimeoutError(f"no healthy server at {url} after {timeout} s")


def app_with(reasoner, plan=("understand", "deep-think"), **settings):
    return create_app(ServerSettings(**settings), backend=fake_backend(reasoner, plan))
