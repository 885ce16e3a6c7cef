"""`RuntimeConfig`: what builds a runnable rSIM graph, and the flags every command reads it from.

`python -m rsim_graph solve`, `python -m server` and `python -m evals` take every field below as a flag of
the same name, meaning and default (the trainers take the ones that apply to rollouts); `--help` shows
each default. `rsim_graph.load_runtime(config)` turns a config into a `Runtime`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args, get_origin, get_type_hints

from rsim_graph.errors import InputError

# How the reasoner sees a strategy; `auto` is resolved per reasoner by `loading.resolve_injection`.
Injection = Literal["auto", "prefill", "system", "headers"]
ReasonerMode = Literal["prefill", "turns"]


def _flag(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class RuntimeConfig:
    """The planner, the reasoner, the strategies and the budgets of one runtime.

    Args:
        planner (`str`, *optional*): a planner spec (`loading.PLANNER_SPECS`); None: the bundled trained planner.
        sample_planner (`bool`, *optional*, defaults to `False`): sample the planner's strategy instead of taking its most likely one.
        planner_base_url (`str`, *optional*): OpenAI-compatible server for a `prompt:<model>` planner (default: `reasoner_base_url`).
        reasoner (`str`, *optional*): a reasoner spec; None: the bundled tiny reasoner trained with the bundled planner.
        reasoner_base_url, reasoner_model, reasoner_api_key (`str`, *optional*): an OpenAI-compatible upstream as the reasoner.
        reasoner_mode (`str`, *optional*, defaults to `"prefill"`): how a chat upstream sees injected strategies.
        injection (`str`, *optional*, defaults to `"auto"`): how the reasoner sees a strategy.
        strategies (`str`, *optional*): a strategy library YAML; None: the nine built-in strategies.
        temperature (`float`, *optional*, defaults to `0.0`): the reasoner's sampling temperature (0: greedy).
        seed (`int`, *optional*, defaults to `0`): seeds the planner's and the reasoner's sampling.
        max_reasoning_steps, max_step_tokens, max_total_tokens (`int`): the budgets (`graph.Limits`).
        max_retries (`int`, *optional*, defaults to `2`): retries of a failed call to an OpenAI-compatible upstream.
    """

    planner: str | None = _flag(
        None,
        "a planner checkpoint directory, 'tiny' (the bundled trained planner), 'tiny-init', 'smollm2', 'random', 'ps+', "
        "'heuristic', 'heuristic-check', 'scripted:ID,ID,...' or 'prompt:<model>' (unset: tiny)",
    )
    sample_planner: bool = _flag(False, "sample the planner's strategy instead of taking its most likely one")
    planner_base_url: str | None = _flag(None, "OpenAI-compatible server for a prompt:<model> planner (unset: --reasoner_base_url)")
    reasoner: str | None = _flag(
        None,
        "a local model directory, hub id, .gguf file, 'tiny-rsim' (the bundled reasoner trained with the bundled planner), "
        "'tiny' (the bundled pretrained one), 'smollm2', 'smollm2-rsim' or 'vllm:<model>' (unset: tiny-rsim)",
    )
    reasoner_base_url: str | None = _flag(None, "an OpenAI-compatible server (vLLM, SGLang, Ollama) as the reasoner, instead of --reasoner")
    reasoner_model: str | None = _flag(None, "the model name that --reasoner_base_url serves")
    reasoner_api_key: str | None = _flag(None, "the key --reasoner_base_url (and --planner_base_url) expects")
    reasoner_mode: ReasonerMode = _flag("prefill", "how a chat upstream sees injected strategies: continuing its own turn, or a user turn per step")
    injection: Injection = _flag(
        "auto", "how the reasoner sees a strategy (auto: prefill for the bundled tiny models, system for others; docs/real-llm.md: Injection formats)"
    )
    strategies: str | None = _flag(None, "a strategy library YAML (unset: the nine built-in strategies)")
    temperature: float = _flag(0.0, "the reasoner's sampling temperature (0: greedy; the server: when a request sets none)")
    seed: int = _flag(0, "seeds the planner's and the reasoner's sampling")
    max_reasoning_steps: int = _flag(12, "reasoning steps per answer, the terminating one included (the server: a request's max_steps default and cap)")
    max_step_tokens: int = _flag(256, "reasoner tokens per step")
    max_total_tokens: int = _flag(2048, "reasoner tokens per answer, all steps together (the server: a request's max_tokens default and cap)")
    max_retries: int = _flag(2, "retries of a failed call to an OpenAI-compatible server")

    def __post_init__(self):
        if self.reasoner_base_url and not self.reasoner_model:
            raise InputError("--reasoner_base_url needs --reasoner_model: the model name that server serves")
        if self.reasoner_base_url and self.reasoner:
            raise InputError("pass either --reasoner (a local or vLLM model) or --reasoner_base_url (an upstream server), not both")
        for name in ("max_reasoning_steps", "max_step_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} must be at least 1 (got {getattr(self, name)}): the answer itself is a step")
        if self.max_total_tokens < self.max_step_tokens:
            raise InputError(
                f"--max_total_tokens ({self.max_total_tokens}) is below --max_step_tokens ({self.max_step_tokens}); "
                "raise --max_total_tokens or lower --max_step_tokens so one full step fits"
            )
        if self.temperature < 0:
            raise InputError(f"--temperature must be 0 (greedy) or more (got {self.temperature})")
        if self.max_retries < 0:
            raise InputError(f"--max_retries must be 0 or more (got {self.max_retries})")
        choices = {name: get_args(hint) for name, hint in _hints().items() if get_origin(hint) is Literal}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"--{name} {getattr(self, name)!r} is not a choice; use one of {', '.join(allowed)}")


def _hints() -> dict:
    return get_type_hints(RuntimeConfig)


def runtime_field(name: str, **overrides):
    """A dataclass field that is `RuntimeConfig.<name>`: its default and help, for configs that embed some of its
    flags (the trainers' `MARLConfig`), so every command documents a shared flag alike."""
    f = RuntimeConfig.__dataclass_fields__[name]
    return field(default=overrides.get("default", f.default), metadata={"help": f.metadata["help"]})


def add_runtime_flags(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add `RuntimeConfig`'s fields (or those in `names`) to an argparse parser, as `--<field>` flags."""
    hints = _hints()
    for f in dataclasses.fields(RuntimeConfig):
        if names is not None and f.name not in names:
            continue
        hint, kwargs = hints[f.name], {"default": f.default, "help": f.metadata["help"]}
        if hint is bool:
            parser.add_argument(f"--{f.name}", action="store_true", **kwargs)
            continue
        if get_origin(hint) is Literal:
            kwargs["choices"] = get_args(hint)
        else:
            kwargs["type"] = next(t for t in (get_args(hint) or (hint,)) if t is not type(None))
        parser.add_argument(f"--{f.name}", **kwargs)


def config_from(values: object) -> RuntimeConfig:
    """A `RuntimeConfig` from any object carrying its fields as attributes (parsed flags, server settings)."""
    return RuntimeConfig(**{f.name: getattr(values, f.name) for f in dataclasses.fields(RuntimeConfig) if hasattr(values, f.name)})


def runtime_settings_fields() -> dict:
    """`RuntimeConfig`'s fields as pydantic `(type, Field)` pairs, for `pydantic.create_model` (the server's settings)."""
    from pydantic import Field

    hints = _hints()
    return {f.name: (hints[f.name], Field(f.default, description=f.metadata["help"])) for f in dataclasses.fields(RuntimeConfig)}


# Flags that were renamed when the commands' flags were unified, and what to pass now.
RENAMED = {
    "--max_steps": "--max_reasoning_steps (the trainers' --max_steps counts optimizer steps)",
    "--api_key": "--reasoner_api_key (in `python -m server`, --api_key is the keys its clients send)",
    "--greedy_planner": "nothing: the planner is greedy by default now (--sample_planner samples)",
    "--max_tokens": "--max_total_tokens (the server's cap and default for a request's max_tokens)",
}


def refuse_renamed(parser: argparse.ArgumentParser) -> None:
    """Old flag names fail with the new one in a single line, instead of argparse's generic refusal."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.exit(2, f"error: {option_string} is renamed; pass {RENAMED[option_string]}\n")

    for old in RENAMED:
        parser.add_argument(old, nargs="?", action=Renamed, help=argparse.SUPPRESS)
