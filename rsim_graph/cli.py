"""`rsim COMMAND ...`: every command of the project under one name, as `trl sft` or `vllm serve` are.

    rsim solve "What is 12*(3+4)-5?"        # python -m rsim_graph solve ...
    rsim serve --port 8000                  # python -m server ...
    rsim eval --task arith --limit 50       # python -m evals ...
    rsim train --config trainers/recipes/arith_tiny.yaml   # python -m trainers.marl ...

Each command runs its module as `python -m` would (`runpy`), so the flags, `--help` and exit codes are the
module's own. The commands of `trainers`, `evals` and `server` are named here as strings and loaded only
when asked for: the core still imports none of them (tests/test_layers.py).
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

# command -> (module, what it does)
COMMANDS = {
    "solve": ("rsim_graph", "answer one question with strategy-injected reasoning"),
    "serve": ("server", "the OpenAI-compatible server (/v1/chat/completions)"),
    "eval": ("evals", "the paper's comparison tables on any task, reasoner and planner"),
    "plans": ("evals.plans", "every fixed plan on one task: what strategies add, and the headroom for a planner"),
    "bench": ("evals.bench", "the speed benchmarks"),
    "train": ("trainers.marl", "train planner and reasoner together (multi-agent GRPO)"),
    "grpo": ("trainers.grpo", "the plain GRPO baseline (the reasoner alone)"),
    "sft": ("trainers.sft", "supervised fine-tuning of the reasoner on step-formatted traces"),
    "ablate": ("trainers.ablate", "the ablation table"),
    "credit": ("trainers.credit", "how a trained run's advantage splits between planner and reasoner"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}  (python -m {module}{' solve' if name == 'solve' else ''})" for name, (module, what) in COMMANDS.items())
    return f"usage: rsim COMMAND [flags]   (rsim COMMAND --help for a command's flags)\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)} (rsim --help lists them)", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    sys.argv = [f"rsim {name}", *(["solve"] if name == "solve" else []), *rest]
    # A module imported before (tests, embedding) would make runpy warn and run over the stale copy; a package's
    # own module stays, only its __main__ is what runs.
    spec = importlib.util.find_spec(module)
    sys.modules.pop(f"{module}.__main__" if spec and spec.submodule_search_locations else module, None)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:  # the module's own exit code (its `sys.exit(main())`, or argparse's)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
