"""The README's OpenAI SDK and LangChain snippets run as written, against a live server on loopback."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from server_utils import live_server

from rsim_graph.loading import BUNDLED_PLANNER
from server.app import create_app
from server.engine import load_backend
from server.settings import ServerSettings

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPET = re.compile(r"<!-- tested: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (BUNDLED_PLANNER / "planner.json").is_file(), reason="bundled models not built")]


def snippets() -> dict[str, str]:
    return dict(SNIPPET.findall(README.read_text()))


def test_the_readme_has_the_tested_snippets():
    assert set(snippets()) == {"python", "openai", "langchain"}


@pytest.fixture(scope="module")
def url():
    with live_server(create_app(ServerSettings(), backend=load_backend(ServerSettings()))) as base:
        yield base


@pytest.mark.parametrize("name", ["python", "openai", "langchain"])
def test_readme_snippet_runs(name, url):
    code = snippets()[name].replace("http://127.0.0.1:8000", url)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README:{name}", "exec"), scope)  # noqa: S102 - running the README is the point
    printed = out.getvalue()
    if name == "python":
        assert scope["reply"].done.answer == "57" and scope["reply"].content.endswith("\\boxed{57}")
        assert len(scope["states"]) == 8 and "[terminate]" in printed
    elif name == "openai":
        assert scope["trace"]["answer"] == "57" and scope["plain"].choices[0].message.model_extra["rsim"]["strategy_injection"] is False
        assert "terminate" in printed
    else:
        assert scope["reply"].response_metadata["rsim"]["answer"] == "368"
        assert printed.rstrip().endswith("\\boxed{57}")
