"""`langgraph dev` serves the graph from `langgraph.json`, as LangGraph Platform would, and the LangGraph SDK
client runs threads on it: the bundled tiny models, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_utils import free_port, wait_healthy

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def platform():
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert cli, "langgraph-cli is a dev dependency: make install"
    port = free_port()
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    cmd = [cli, "dev", "--no-browser", "--no-reload", "--allow-blocking", "--port", str(port), "--config", "langgraph.json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout=180, path="/ok")
        yield url
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        if proc.returncode not in (0, -15):
            print(out.decode(errors="replace")[-3000:])


def test_threads_run_the_graph_and_keep_each_question(platform):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=platform)
    assert [a["graph_id"] for a in client.assistants.search()] == ["rsim"]
    thread = client.threads.create()
    first = client.runs.wait(thread["thread_id"], "rsim", input={"question": "Compute (12+7)*3."})
    assert first["answer"] == "57" and first["steps"][-1]["strategy"] == "terminate"  # as `make solve` answers it
    second = client.runs.wait(thread["thread_id"], "rsim", input={"question": "Compute 4*5."})
    assert second["question"] == "Compute 4*5." and second["trajectory_id"] != first["trajectory_id"]
    assert len(client.threads.get_history(thread["thread_id"])) > len(first["steps"])  # the thread kept the first run


def test_the_messages_stream_carries_the_reasoners_tokens(platform):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=platform)
    text, names = "", set()
    for part in client.runs.stream(None, "rsim", input={"question": "Compute (12+7)*3."}, stream_mode="messages-tuple"):
        if part.event == "messages":
            chunk, meta = part.data
            text += chunk["content"]
            names.add(meta.get("rsim_strategy"))
    assert text.endswith("\\boxed{57}") and {"deep-think", "terminate"} <= names
