"""The commands share the runtime's flags (`RuntimeConfig`): same names, help and defaults in every `--help`."""

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml

from rsim_graph.config import RuntimeConfig

RECIPE = yaml.safe_load((Path(__file__).parents[1] / "trainers" / "recipes" / "arith_tiny.yaml").read_text())
# What a trainer's rollouts share with the runtime; the rest of RuntimeConfig does not apply to training.
TRAINER_SHARED = {"strategies", "injection", "max_reasoning_steps", "max_step_tokens"}


def help_text(capsys, monkeypatch, command: str) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping: one line per flag
    if command == "solve":
        from rsim_graph.__main__ import parse_args as run

        argv = ["solve", "--help"]
    elif command == "server":
        from server.__main__ import parse as run

        argv = ["--help"]
    elif command == "evals":
        from evals.__main__ import parse_args as run

        argv = ["--help"]
    else:
        from trainers.marl import cli as run

        argv = ["--help"]
    with pytest.raises(SystemExit):
        run(argv)
    return capsys.readouterr().out


def flags(text: str) -> dict[str, tuple[str, str | None]]:
    """`{flag: (help, default)}` from an argparse-style help text (a flag's help may start on the next line)."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if re.match(r"^\s+--\w", line):
            signature, _, rest = line.strip().partition("  ")  # the help follows two spaces, or the next line
            entries.append([signature.split()[0].rstrip(","), rest.strip()])
        elif entries and line.startswith("    ") and line.strip():
            entries[-1].append(line.strip())
        elif not line.strip() and entries:
            entries.append(["", ""])  # a blank line ends the entry
    out = {}
    for flag, *parts in entries:
        if not flag.startswith("--") or flag == "--help":
            continue
        body = " ".join(" ".join(parts).split())
        d = re.search(r"\(default(?: factory)?: (.*)\)$", body)
        default = None if d is None else {"null": "None", "[]": "list"}.get(d.group(1), d.group(1))
        out[flag.removeprefix("--")] = (body[: d.start()].strip() if d else body, default)
    return out


@pytest.fixture(scope="module")
def canonical():
    return {f.name: (" ".join(f.metadata["help"].split()), str(f.default)) for f in dataclasses.fields(RuntimeConfig)}


@pytest.mark.parametrize("command", ["solve", "server", "evals", "trainers.marl"])
def test_every_flag_shows_its_default_and_shared_flags_read_alike(capsys, monkeypatch, canonical, command):
    found = flags(help_text(capsys, monkeypatch, command))
    assert len(found) > 10
    missing_default = [name for name, (_, default) in found.items() if default is None]
    assert not missing_default, f"{command} --help shows no default for {missing_default}"
    shared = TRAINER_SHARED if command == "trainers.marl" else set(canonical)
    for name in shared:
        assert name in found, f"{command} lacks the shared flag --{name}"
        expected = canonical[name]
        if command == "trainers.marl" and name in RECIPE:  # the default recipe's value is the command's default
            expected = (expected[0], str(RECIPE[name]))
        assert found[name] == expected, f"{command} --{name} differs from RuntimeConfig: {found[name]} vs {expected}"


def test_the_trainers_planner_flag_is_the_starting_planner(capsys, monkeypatch):
    # The one shared name whose default differs, on purpose: training starts from the untrained planner.
    help_, default = flags(help_text(capsys, monkeypatch, "trainers.marl"))["planner"]
    assert default == "None" and "tiny-init" in help_ and "starts from" in help_


def test_flags_build_a_validated_config():
    from rsim_graph.__main__ import parse_args
    from rsim_graph.config import config_from
    from rsim_graph.errors import InputError

    config = config_from(parse_args(["solve", "q", "--max_reasoning_steps", "5", "--sample_planner", "--injection", "system"]))
    assert (config.max_reasoning_steps, config.sample_planner, config.injection, config.max_step_tokens) == (5, True, "system", 256)
    with pytest.raises(InputError, match="raise --max_total_tokens or lower --max_step_tokens"):
        config_from(parse_args(["solve", "q", "--max_step_tokens", "300", "--max_total_tokens", "200"]))
    with pytest.raises(InputError, match="needs --reasoner_model"):
        RuntimeConfig(reasoner_base_url="http://localhost:1/v1")


@pytest.mark.parametrize(
    "argv",
    [["evals.bench", "rollout"], ["evals.bench", "server"], ["trainers.bench"], ["trainers.ablate"], ["trainers.credit"], ["trainers.pretrain_tiny"],
     ["trainers.grpo"], ["trainers.sft"]],
)
def test_every_other_command_shows_its_defaults_too(argv):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", *argv, "--help"], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    found = flags(proc.stdout)
    assert found and not [name for name, (_, default) in found.items() if default is None], proc.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_tokens", "5"], "--max_tokens is renamed; pass --max_total_tokens"),
        (["--max_steps=3"], "--max_steps is renamed; pass --max_reasoning_steps"),
        (["--max_step_tokens", "300", "--max_total_tokens", "200"], "raise --max_total_tokens or lower --max_step_tokens"),
        (["--reasoner_base_url", "http://x/v1"], "needs --reasoner_model"),
    ],
)
def test_the_server_refuses_bad_flags_in_one_line(capsys, argv, message):
    from server.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_auto_injection_follows_the_reasoner():
    from conftest import ScriptedReasoner

    from rsim_graph.config import RuntimeConfig
    from rsim_graph.loading import injection_for
    from rsim_graph.engine.tiny_models import build_tokenizer

    class Tokenized(ScriptedReasoner):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

    auto = RuntimeConfig()
    assert injection_for(auto, ScriptedReasoner(), loaded=False) == "system"  # a chat model handed in
    assert injection_for(auto, Tokenized(build_tokenizer()), loaded=False) == "prefill"  # rSIM's tiny tokenizer
    assert injection_for(RuntimeConfig(injection="headers"), ScriptedReasoner(), loaded=False) == "headers"
    assert injection_for(RuntimeConfig(reasoner="smollm2"), ScriptedReasoner(), loaded=True) == "system"


def test_the_paper_recipes_pin_the_papers_injection():
    for name in ("qwen2.5-0.5b_planner-0.5b_math", "qwen2.5-0.5b_planner-7b_math", "llama-3.2-1b_math"):
        recipe = yaml.safe_load((Path(__file__).parents[1] / "trainers" / "recipes" / f"{name}.yaml").read_text())
        assert recipe["injection"] == "prefill", name
