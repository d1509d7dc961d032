"""Where output goes: results on stdout, everything else (logs, progress, errors) on stderr.

The one console factory of the command line, the one width of human output in a pipe, and
the one way a ``--json`` object is printed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

#: Width for human output when stdout is not a terminal (rich would default to 80 columns).
PIPE_WIDTH = 120


def _piped(console: Console) -> bool:
    return not console.is_terminal and "COLUMNS" not in os.environ


def stdout_console() -> Console:
    """Human results: the terminal's width, or :data:`PIPE_WIDTH` into a pipe or a file."""
    console = Console(highlight=False)
    if _piped(console):
        console.width = PIPE_WIDTH
    return console


def stderr_console() -> Console:
    """Progress bars and other live output, beside the logs."""
    return Console(stderr=True, highlight=False)


def fit_table(console: Console, table: Table) -> None:
    """Into a pipe or a file a table is never cropped: widen the console to the table's
    natural width (never below :data:`PIPE_WIDTH`); on a terminal it fits the terminal."""
    if _piped(console):
        natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
        console.width = max(PIPE_WIDTH, natural)


def print_table(console: Console, table: Table) -> None:
    fit_table(console, table)
    console.print(table)


def emit_json(obj: Any) -> None:
    """The one JSON object of a ``--json`` run (strict JSON: no NaN or Infinity)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


__all__ = [
    "PIPE_WIDTH",
    "emit_json",
    "fit_table",
    "print_table",
    "stderr_console",
    "stdout_console",
]
