"""The methods the evaluation compares, as a planner (or none) plus an instruction.

Two prompt styles:
- `instruct` (real chat models): ZeroCoT and PS+ are their prompts, given as the system message
  (Kojima et al. 2022; Wang et al. 2023). rSIM rows get no instruction: the injected strategies are the method.
- `plain` (the bundled tiny models, trained without any instructions, for which English prompts are
  noise: on 200 held-out problems a ZeroCoT system prompt took the tiny reasoner from 9.5% to 5.5%,
  the PS+ prompt to 1%): ZeroCoT is the reasoner alone, and PS+ is delivered in the only form these
  models read, as injected steps following Plan-and-Solve's plan (understand, sub-plan, deep-think x4).
"""

from __future__ import annotations

from dataclasses import dataclass

from rsim_graph.errors import InputError
from rsim_graph.loading import default_planner_spec

ZERO_COT_PROMPT = "Let's think step by step, and put your final answer within \\boxed{}."
PS_PLUS_PROMPT = (
    "Let's first understand the problem, extract relevant variables and their corresponding numerals, and devise a plan. "
    "Then, let's carry out the plan, calculate intermediate variables (pay attention to correct numerical calculation and "
    "commonsense), solve the problem step by step, and show the answer within \\boxed{}."
)
METHODS = "zero-cot, ps+, ps+-script, prompt-planner:<chat model>, rsim, rsim:<planner dir>, random-planner, heuristic, heuristic-check, none"


@dataclass(frozen=True)
class Method:
    """How one row of the table answers.

    Args:
        name (`str`): as given on the command line.
        planner (`str`, *optional*): a `load_planner` spec; None means the reasoner answers alone.
        system_prompt (`str`, *optional*): the instruction given as the system message.
    """

    name: str
    planner: str | None
    system_prompt: str | None = None


def resolve(name: str, *, prompt_style: str = "plain", planner_dir: str | None = None) -> Method:
    """Turn a method name into a `Method`. `planner_dir` is what `rsim` means (default: the bundled planner, and a
    `CheckpointError` saying what to pass when it is missing)."""
    instruct = prompt_style == "instruct"
    if name == "zero-cot":
        return Method(name, None, ZERO_COT_PROMPT if instruct else None)
    if name == "ps+":
        return Method(name, None, PS_PLUS_PROMPT) if instruct else Method(name, "ps+")
    if name == "ps+-script":
        return Method(name, "ps+")
    if name == "none":  # a direct answer: the terminating strategy at once
        return Method(name, "scripted:")
    if name == "random-planner":
        return Method(name, "random")
    if name in ("heuristic", "heuristic-check"):
        return Method(name, name)
    if name == "rsim":
        return Method(name, planner_dir or default_planner_spec())
    if name.startswith("rsim:"):
        return Method(name, name.removeprefix("rsim:"))
    if name.startswith("prompt-planner:"):
        return Method(name, "prompt:" + name.removeprefix("prompt-planner:"))
    raise InputError(f"unknown method {name!r}; choose from {METHODS}")
