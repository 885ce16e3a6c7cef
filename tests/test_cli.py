"""`rsim COMMAND`: one console command for every module's CLI."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

from rsim_graph.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_the_console_script_is_declared_and_every_command_names_a_runnable_module():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"rsim": "rsim_graph.cli:main"}
    for name, (module, _) in COMMANDS.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None, name
        if spec.submodule_search_locations:  # a package runs its __main__
            assert importlib.util.find_spec(module + ".__main__") is not None, name


def test_help_lists_every_command_with_its_python_m_form(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (module, _) in COMMANDS.items():
        assert f"  {name} " in out and f"python -m {module}" in out
    assert "python -m rsim_graph solve)" in out


def test_an_unknown_command_is_one_line(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown command 'trian'; choose from " + ", ".join(COMMANDS) + " (rsim --help lists them)\n"


def test_solve_runs_the_module_with_its_flags_and_exit_code(capsys):
    assert main(["solve", "Compute 3+4.", "--json", "--max_reasoning_steps", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["steps"]) <= 3 and out["stop_reason"]
    assert main(["solve", "  "]) == 2  # the module's own refusal and exit code
    assert "the question is empty" in capsys.readouterr().err


def test_a_commands_bad_flag_is_its_own_argparse_error(capsys):
    assert main(["eval", "--no_such_flag"]) == 2  # argparse exits inside the module; main passes the code on
    assert "unrecognized arguments: --no_such_flag" in capsys.readouterr().err
