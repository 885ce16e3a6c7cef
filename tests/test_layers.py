"""Dependencies point one way (README, "Architecture"): `rsim_graph` is the core; `trainers`, `evals` and `server`
build on it. `trainers` and `evals` never import each other, and `server` neither of them; `evals` may import
`server` (its server benchmark starts it). Every import counts, at any depth (a lazy one inside a function too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rsim_graph", "trainers", "evals", "server")
# package -> the packages it must never import
FORBIDDEN = {
    "rsim_graph": {"trainers", "evals", "server"},
    "trainers": {"evals"},
    "evals": {"trainers"},
    "server": {"trainers", "evals"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}, which {package} must not depend on"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imported_packages(path)
        if name in FORBIDDEN[package]
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    found = violations(package)
    assert not found, "\n".join(found)


def test_lazy_imports_are_found(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from evals.runner import evaluate\n    import trainers.data as d\n")
    assert imported_packages(source) == [(1, "os"), (4, "evals"), (5, "trainers")]
