"""The trainers' command line: flags over a default YAML recipe through `TrlParser`, one-line errors.

Each script's `cli()` calls `run_script`, which prints the report its `main` returns.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)
RECIPES = Path(__file__).with_name("recipes")


def with_default_recipe(argv: list[str] | None, recipe: str) -> list[str]:
    """`python -m trainers.X` with no `--config` runs the bundled default recipe; flags still override it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return argv if "--config" in argv else ["--config", str(RECIPES / recipe), *argv]


def run_script(types: tuple, main, recipe: str, argv: list[str] | None = None) -> int:
    """The trainers' command line: parse flags over the default recipe, run `main`, print its report.

    `main(script_args, training_args, model_args) -> str` returns what to show the user. Bad configs,
    paths and checkpoints end in one `error:` line and exit code 2.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from trl import TrlParser

    return print_report(lambda: main(*TrlParser(types).parse_args_and_config(with_default_recipe(argv, recipe))))


def print_report(make_report, also: tuple[type[Exception], ...] = ()) -> int:
    """The one place the trainers' commands print: the report `make_report()` returns, or one `error:` line
    (exit code 2) for a bad config, path or checkpoint, or an exception of the types in `also`."""
    from rsim_graph.errors import RSIMError

    try:
        report = make_report()
    except (RSIMError, ValueError, FileNotFoundError, *also) as e:
        logger.debug("details", exc_info=True)
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if report:
        print(report)
    return 0
