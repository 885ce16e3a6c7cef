"""SmolLM2-135M-Instruct end to end: the converted GGUF through the runtime and `python -m server`, and the same
GGUF served by llama-cpp-python's OpenAI-compatible server as a third-party `--reasoner_base_url`.

Skipped without the model (`make smollm2`); the upstream tests also need llama-cpp-python's server, found as
`llama_cpp` in this environment or as the Python named by `RSIM_LLAMA_CPP_PYTHON` (it builds from its sdist in
minutes: `pip install 'llama-cpp-python[server]'` into any virtual environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from server_utils import free_port, wait_healthy

from rsim_graph.errors import CheckpointError
from rsim_graph.engine.gguf import smollm2_gguf

try:
    GGUF = smollm2_gguf()
except CheckpointError:
    GGUF = None

pytestmark = [pytest.mark.slow, pytest.mark.skipif(GGUF is None, reason="SmolLM2 is not installed (make smollm2)")]
QUESTION = "Chen has 56 apples. Chen buys 3 bags with 24 apples in each. How many apples does Chen have now?"


def llama_cpp_python() -> str | None:
    if os.environ.get("RSIM_LLAMA_CPP_PYTHON"):
        return os.environ["RSIM_LLAMA_CPP_PYTHON"]
    import importlib.util

    return sys.executable if importlib.util.find_spec("llama_cpp") else None


@pytest.fixture(scope="module")
def upstream():
    python = llama_cpp_python()
    if python is None:
        pytest.skip("llama-cpp-python's server is not installed (set RSIM_LLAMA_CPP_PYTHON to a Python that has it)")
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", str(GGUF), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_healthy(base.removesuffix("/v1"), timeout=180, path="/v1/models")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("mode", ["turns", "prefill"])
def test_llama_cpp_server_as_the_reasoner(upstream, mode):
    cmd = [
        sys.executable, "-m", "rsim_graph", "solve", QUESTION, "--planner", "ps+", "--reasoner_base_url", upstream,
        "--reasoner_model", "smollm2", "--reasoner_mode", mode, "--max_step_tokens", "64", "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert [s["strategy"] for s in out["steps"]][-1] == "terminate" and all(s["text"].strip() for s in out["steps"])
    assert out["usage"]["reasoner_tokens"] >= len(out["steps"])  # llama.cpp's own completion_tokens, not 0


def test_python_m_server_answers_the_openai_sdk_with_smollm2():
    from openai import OpenAI

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--reasoner", "smollm2", "--planner", "heuristic", "--max_step_tokens", "48"],
        env={**os.environ, "RSIM_PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=300)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        reply = client.chat.completions.create(model="rsim", messages=[{"role": "user", "content": QUESTION}], max_tokens=400)
        assert reply.choices[0].message.content.strip()
        assert reply.usage.completion_tokens > 0
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def shipped() -> bool:
    from rsim_graph.engine.gguf import SMOLLM2_ASSETS

    return (SMOLLM2_ASSETS / "planner" / "planner.json").is_file() and (SMOLLM2_ASSETS / "reasoner" / "adapter_config.json").is_file()


@pytest.mark.skipif(not shipped(), reason="the trained SmolLM2 planner and adapter are not in rsim_graph/assets/smollm2")
def test_trained_planner_and_reasoner_solve_and_evaluate(tmp_path):
    cmd = [sys.executable, "-m", "rsim_graph", "solve", "Compute (3+4)-2.", "--reasoner", "smollm2-rsim", "--planner", "smollm2",
           "--max_step_tokens", "48", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["steps"][-1]["strategy"] == "terminate" and all(s["text"].strip() for s in out["steps"])

    cmd = [sys.executable, "-m", "evals", "--reasoner", "smollm2", "--planner", "smollm2", "--method", "zero-cot,rsim",
           "--task", "arith-easy", "--limit", "4", "--max_step_tokens", "48", "--max_total_tokens", "256", "--no_progress", "--output_dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "SmolLM2-135M-Instruct"
    assert set(summary["tasks"]["arith-easy"]) == {"zero-cot", "rsim"} and summary["tasks"]["arith-easy"]["rsim"]["n"] == 4
