"""The README's Python, OpenAI SDK and LangChain snippets run as written (against a live server on loopback), and so do
the cheap shell commands of the README and docs/."""

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


# Shell blocks marked `<!-- tested: bash -->` in the README and docs/ are cheap enough to run as written.
BASH = re.compile(r"<!-- tested: bash -->\n```bash\n(.*?)```", re.DOTALL)
DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every line of every tested block; `\\` continues a line, `#` starts a comment."""
    import shlex

    found = []
    for path in DOCS:
        for block in BASH.findall(path.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                argv = shlex.split(line, comments=True)
                if argv:
                    found.append((f"{path.name}: {line.strip()[:60]}", argv))
    return found


def test_the_tested_shell_blocks_are_found():
    heads = [" ".join(argv[:3]) for _, argv in shell_commands()]
    assert heads.count(".venv/bin/python -m rsim_graph") == 3
    assert ".venv/bin/python -m trainers.marl" in heads and ".venv/bin/python -m rsim_graph.cli" in heads


@pytest.mark.parametrize("where,argv", shell_commands(), ids=[w for w, _ in shell_commands()])
def test_shell_command_runs_as_written(where, argv, tmp_path):
    import subprocess
    import sys

    root = README.parent
    for top in ("trainers", "rsim_graph", "evals", "server"):  # relative paths in the commands resolve as in a clone
        (tmp_path / top).symlink_to(root / top)
    argv = [sys.executable if a == ".venv/bin/python" else a for a in argv]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{where}\n{done.stderr[-2000:]}"
    assert done.stdout.strip(), where
    if argv[1:3] == ["-m", "rsim_graph"] and "--json" not in argv:
        assert "answer:" in done.stdout.splitlines()[-1]
    if "--json" in argv:
        import json

        assert json.loads(done.stdout)["stop_reason"]
    if "smoke.yaml" in " ".join(argv):  # the one-minute run: 2 steps, no warm-up, validated at 0 and 2, a planner saved
        import json

        results = json.loads((tmp_path / "outputs" / "smoke" / "results.json").read_text())
        assert results["steps"] == 2 and results["warmup"] == {} and [v["step"] for v in results["validation"]] == [0, 2]
        assert (tmp_path / "outputs" / "smoke" / "planner" / "head.pt").is_file() and "| rSIM planner |" in done.stdout
        assert list(results["phases"]) == ["load", "before", "warm-up", "training", "validation", "after"]
        assert results["phases"]["warm-up"] < 1 < results["phases"]["training"] and results["phases"]["validation"] > 0
        assert done.stdout.rstrip().splitlines()[-1].startswith("wall time: load ")
