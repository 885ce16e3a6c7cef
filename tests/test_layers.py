"""Dependencies point one way (README, "Architecture"): `rsim_graph` is the core; `trainers`, `evals` and `server`
build on it. `trainers` and `evals` never import each other, and `server` neither of them; `evals` may import
`server` (its server benchmark starts it). Every import counts, at any depth (a lazy one inside a function too).

Inside the core, the same holds between its parts (`CORE_LAYERS`, lowest first): the basic types (`errors`, `state`,
`strategies`, `config`, `events`, `safety`, `messages`); then `engine` and `scoring`, which know only those; `tasks`;
`planners` and `reasoners`; the runtime that assembles them (`graph`, `runs`, `loading`); and on top `evaluation`
and `integrations`, which never import each other. A part imports its own layer or those below it."""

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


# the core's parts, lowest first; a module may import its own layer and the ones below (not its siblings' on top)
CORE_LAYERS = [
    {"errors", "state", "strategies", "config", "events", "safety", "messages"},
    {"engine", "scoring"},
    {"tasks"},
    {"planners", "reasoners"},
    {"graph", "runs", "loading"},
    {"evaluation", "integrations"},
]
PART_LAYER = {part: i for i, layer in enumerate(CORE_LAYERS) for part in layer}


def core_part(module: str) -> str | None:
    """`rsim_graph.engine.kvcache` -> `engine`, `rsim_graph.graph` -> `graph`; None for the package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "rsim_graph" and len(parts) > 1 else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import, `from rsim_graph import x` read as `rsim_graph.x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names] if node.module == "rsim_graph" else [(node.lineno, node.module)]
    return found


def core_violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "rsim_graph").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        own = core_part(".".join(rel.parts))
        if own is None or own in ("__init__", "__main__", "cli"):  # the package's front door and commands sit on top of everything
            continue
        if own not in PART_LAYER:
            out.append(f"{rel}.py belongs to no layer: add its part to CORE_LAYERS")
            continue
        for line, module in imported_modules(path):
            other = core_part(module)
            if other is None or other == own:
                continue
            if other not in PART_LAYER or PART_LAYER[other] > PART_LAYER[own] or (PART_LAYER[other] == PART_LAYER[own] and PART_LAYER[own] == len(CORE_LAYERS) - 1):
                out.append(f"{rel}.py:{line} imports {module}: {own} sits below or beside {other}")
    return out


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


def test_the_core_parts_import_only_downwards():
    found = core_violations(ROOT)
    assert not found, "\n".join(found)


def test_a_core_import_upwards_or_sideways_is_found(tmp_path):
    core = tmp_path / "rsim_graph"
    (core / "engine").mkdir(parents=True)
    (core / "evaluation").mkdir()
    (core / "engine" / "kvcache.py").write_text("from rsim_graph.errors import InputError\n\ndef f():\n    from rsim_graph.graph import run\n")
    (core / "evaluation" / "runner.py").write_text("from rsim_graph.loading import load_runtime\nfrom rsim_graph import integrations\n")
    (core / "newpart.py").write_text("")
    found = core_violations(tmp_path)
    assert found == [
        "rsim_graph/engine/kvcache.py:4 imports rsim_graph.graph: engine sits below or beside graph",
        "rsim_graph/evaluation/runner.py:2 imports rsim_graph.integrations: evaluation sits below or beside integrations",
        "rsim_graph/newpart.py belongs to no layer: add its part to CORE_LAYERS",
    ]


def test_only_the_console_command_names_the_packages_on_top_of_the_core():
    """`rsim_graph/cli.py` runs the other packages' commands by module name; no other core module may load them
    that way (`importlib.import_module("server...")` would hide an import from the checks above)."""
    import re

    pattern = re.compile(r"(trainers|evals|server)(\.\w+)*")
    naming = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "rsim_graph").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.fullmatch(node.value)
    )
    assert set(naming) == {"rsim_graph/cli.py"}
