"""The server on a real loopback port: the openai SDK, langchain-openai's ChatOpenAI, 64 concurrent
clients, client disconnects, and `python -m server` shutting down with requests in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import SlowReasoner, wait_for
from server_utils import app_with, free_port, live_server, wait_healthy

from server.app import create_app
from server.engine import load_backend
from server.settings import ServerSettings

pytestmark = pytest.mark.slow
QUESTION = "Compute (12+7)*3."


@pytest.fixture(scope="module")
def bundled_backend():
    return load_backend(ServerSettings())


@pytest.fixture(scope="module")
def url(bundled_backend):
    with live_server(create_app(ServerSettings(), backend=bundled_backend)) as base:
        yield base


def test_openai_sdk_sync_and_streaming(url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["rsim"]
    done = client.chat.completions.create(model="rsim", messages=[{"role": "user", "content": QUESTION}], max_tokens=512)
    msg = done.choices[0].message
    trace = msg.model_extra["rsim"]
    assert msg.content.endswith("\\boxed{57}") and trace["answer"] == "57"  # the bundled models solve this one
    assert trace["steps"][-1]["strategy"] == "terminate" and len(trace["steps"]) >= 2
    assert done.usage.completion_tokens > 0 and done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

    stream = client.chat.completions.create(
        model="rsim", messages=[{"role": "user", "content": QUESTION}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == msg.content  # greedy: streaming writes the same answer
    strategies = [c.choices[0].delta.model_extra["rsim"]["strategy"] for c in chunks if c.choices and c.choices[0].delta.content]
    assert strategies == [s["strategy"] for s in trace["steps"]]
    assert chunks[-1].usage.completion_tokens == done.usage.completion_tokens

    plain = client.chat.completions.create(
        model="rsim", messages=[{"role": "user", "content": QUESTION}], extra_body={"strategy_injection": False}
    )
    assert plain.choices[0].message.model_extra["rsim"]["strategy_injection"] is False


def test_langchain_chat_openai(url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="rsim", base_url=f"{url}/v1", api_key="unused", temperature=0)
    reply = llm.invoke(QUESTION)
    assert reply.content.endswith("\\boxed{57}")
    assert reply.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed == reply.content


def test_a_small_max_tokens_shortens_reasoning_and_never_lies(url):
    # max_tokens=256 is what many clients send: the steps get shorter, the answer stays 57 (it was 462 when the
    # budget forced the answer at once). Every budget from 64 up ends with a whole boxed answer ("stop") or an
    # answer step that ran out of tokens ("length"); below a whole answer, "length".
    def ask(max_tokens):
        body = {"model": "rsim", "messages": [{"role": "user", "content": QUESTION}], **({"max_tokens": max_tokens} if max_tokens else {})}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    unlimited = ask(None)["choices"][0]["message"]["rsim"]["answer"]
    assert unlimited == "57" and ask(256)["choices"][0]["message"]["rsim"]["answer"] == unlimited
    for budget in [*range(64, 420, 24), 1000]:
        done = ask(budget)
        choice, usage = done["choices"][0], done["usage"]
        assert usage["completion_tokens"] <= budget
        whole = "\\boxed{" in choice["message"]["rsim"]["steps"][-1]["text"]
        assert choice["finish_reason"] == ("stop" if whole else "length"), (budget, choice)
    tiny = ask(8)["choices"][0]
    assert tiny["finish_reason"] == "length" and tiny["message"]["rsim"]["stop_reason"] == "max_total_tokens"


def test_the_max_tokens_cap_fits_the_models_window(url):
    # --max_total_tokens is 2048, the tiny reasoner's window 1024: the cap a client meets is the window's.
    body = {"model": "rsim", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 1025}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens is 1025, over this server's cap of 1024"


def test_rsim_chat_openai_keeps_the_trace_invoked_and_streamed(url):
    from rsim_graph.integrations.chat_openai import RSIMChatOpenAI

    llm = RSIMChatOpenAI(model="rsim", base_url=f"{url}/v1", api_key="unused", temperature=0)
    reply = llm.invoke(QUESTION)
    trace = reply.response_metadata["rsim"]
    assert trace["answer"] == "57" and trace["steps"][-1]["strategy"] == "terminate"
    merged = None
    for chunk in llm.stream(QUESTION):
        merged = chunk if merged is None else merged + chunk
    streamed = merged.response_metadata["rsim"]
    assert streamed["answer"] == "57" and streamed["stop_reason"] == trace["stop_reason"]
    assert streamed["steps"] == [{k: s[k] for k in ("strategy", "text", "forced")} for s in trace["steps"]]


def test_64_concurrent_clients_all_succeed(url, bundled_backend):
    questions = [f"Compute {a}+{a * 3}." for a in range(64)]
    before = len(bundled_backend.reasoner.batcher.batch_sizes)

    async def one(client, q):
        r = await client.post("/v1/chat/completions", json={"model": "rsim", "messages": [{"role": "user", "content": q}]})
        return r.status_code, r.json()

    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            return await asyncio.gather(*(one(client, q) for q in questions))

    results = asyncio.run(run())
    assert [s for s, _ in results] == [200] * 64
    assert all(body["choices"][0]["message"]["rsim"]["answer"] for _, body in results)
    # Concurrent requests shared forward passes: some reasoner batches held many requests.
    assert max(bundled_backend.reasoner.batcher.batch_sizes[before:]) >= 8


def test_disconnect_stops_generation():
    slow = SlowReasoner(delay=0.2)
    with live_server(app_with(slow, plan=["deep-think"] * 10, max_reasoning_steps=12)) as base:
        body = {"model": "rsim", "messages": [{"role": "user", "content": "2+3?"}], "stream": True}
        with httpx.Client(base_url=base, timeout=30) as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content":"step' in line:  # the first real step arrived; hang up
                    break
        # The run leaves the graph (and frees its cache) at its next node: no step can follow the release.
        wait_for(lambda: len(slow.released) == 1, what="the abandoned stream's release")
        assert len(slow.requests) < 11  # well short of the 11 steps

        slow.requests.clear()
        body["stream"] = False
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/v1/chat/completions", json=body, timeout=0.5)
        wait_for(lambda: len(slow.released) == 2, what="the abandoned request's release")
        assert len(slow.requests) < 11


def test_python_m_server_serves_and_shuts_down_cleanly():
    port = free_port()
    env = {**os.environ, "RSIM_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "server", "--max_n", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=180)
        results: list[int] = []
        body = {"model": "rsim", "messages": [{"role": "user", "content": QUESTION}], "n": 4, "temperature": 1.0, "seed": 1}
        threads = [
            threading.Thread(target=lambda: results.append(httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120).status_code))
            for _ in range(4)
        ]
        for t in threads:
            t.start()

        def in_flight() -> int:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            return sum(int(float(line.split()[-1])) for line in metrics.splitlines() if line.startswith(("rsim_requests_running ", "rsim_requests_waiting ")))

        wait_for(lambda: in_flight() == 4, what="four requests in flight")
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        # uvicorn re-raises the signal once it has shut down, so a clean exit reads as -SIGTERM.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert results == [200] * 4, proc.stdout.read()[-4000:]  # in-flight requests were finished, not dropped
    finally:
        proc.kill()
    log = proc.stdout.read()
    assert "Traceback" not in log and "Finished server process" in log


def test_bad_flags_are_one_line_errors():
    proc = subprocess.run([sys.executable, "-m", "server", "--port", "99999"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --port") and proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, "-m", "server", "--reasoner_base_url", "http://x/v1"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--reasoner_model" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "partial",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",  # stalls mid-headers
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\": ",  # stalls mid-body
    ],
)
def test_a_request_that_stalls_is_closed_at_the_read_timeout(partial):
    import socket

    from conftest import ScriptedReasoner

    with live_server(app_with(ScriptedReasoner()), read_timeout=0.5) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(partial)
            start = time.monotonic()
            data = s.recv(65536)  # blocks until the server closes (b""); without the deadline, until the client's 20 s
            closed_after = time.monotonic() - start
        assert data == b"" and closed_after < 15, (data, closed_after)
        # a whole request on a fresh connection is still served
        assert httpx.post(f"{base}/v1/chat/completions", json={"model": "rsim", "messages": [{"role": "user", "content": "2+3?"}]}).status_code == 200
