"""How the evals commands end: their report on stdout, or one `error:` line and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rsim_graph.errors import RSIMError


def run_command(fn: Callable[[], str]) -> int:
    """Print what `fn` returns; a user's mistake is one line and exit code 2, Ctrl-C 130 (records resume)."""
    try:
        print(fn(), end="")
    except RSIMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
