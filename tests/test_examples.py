import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from server_utils import live_server, wait_healthy

from rsim_graph.loading import BUNDLED_REASONER
from rsim_graph.strategies import StrategyLibrary
from server.app import create_app
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_stream_steps_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "stream_steps.py"), "Compute (12+7)*3."], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    first = lines[0].removeprefix("-> ").removesuffix(" (forced)")
    assert lines[0].startswith("-> ") and first in StrategyLibrary.default().ids, lines[0]
    assert lines[-1].startswith("answer: ")


def run_example(name: str, *args: str, env: dict | None = None) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_langchain_agent_example_runs():
    lines = run_example("langchain_agent.py", "Compute (51+41)*4.")
    assert lines[0].startswith("[") and lines[-1] == "answer: 368"


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_subgraph_example_runs():
    assert run_example("subgraph.py", "46", "2", "1") == ["Compute (46*2)-1. -> 91 (correct)"]


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLED_REASONER / "config.json").is_file(), reason="bundled models not built")
def test_openai_client_example_runs_against_the_server():
    with live_server(create_app(ServerSettings())) as url:
        wait_healthy(url)  # the app loads the bundled models in the background
        lines = run_example("openai_client.py", "Compute (12+7)*3.", env={**os.environ, "RSIM_BASE_URL": f"{url}/v1"})
    library = StrategyLibrary.default()
    streamed = lines[:-2]
    assert streamed and all(re.match(r"\[([a-z-]+)\] ", line).group(1) in library for line in streamed)
    assert lines[-2] == "with strategies: 57" and lines[-1].startswith("without:")
