"""Where output goes: results on stdout, everything else (logs, progress, errors) on stderr.

The one console factory of the command line, the one width of human output in a pipe, and
the one way a ``--json`` object is printed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console, RenderableType
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
        console.width = max(PIPE_WIDTH, natural_width(console, table))


def natural_width(console: Console, table: Table) -> int:
    """The width ``table`` takes when nothing in it is wrapped or cut."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def print_table(console: Console, table: Table, *, wide: bool | None = None, keys: int = 1) -> None:
    """Print ``table`` without cutting a cell to "…" or wrapping it mid-line.

    ``wide=False``: a table wider than the console (the terminal, ``$COLUMNS``, or
    :data:`PIPE_WIDTH` into a pipe) is printed as several tables, each with the first ``keys``
    columns (what names a row) and as many of the others as fit (:func:`split_table`).
    ``wide=True`` (``--wide``): one table with every column, the console widened to it (a
    terminal may fold the long lines; a pipe gets them whole). ``wide=None``: a command
    without ``--wide`` yet: one table, widened to its natural width into a pipe only."""
    if wide is None:
        fit_table(console, table)
        console.print(table)
        return
    natural = natural_width(console, table)
    if wide:
        console.width = max(console.width, natural)
    if natural <= console.width:
        console.print(table)
        return
    for part in split_table(console, table, keys=keys):
        console.print(part)


def split_table(console: Console, table: Table, *, keys: int = 1) -> list[Table]:
    """``table`` as tables no wider than the console: each repeats the first ``keys``
    columns and takes the next columns while they fit (always at least one); the first
    keeps the title, the others are titled "(continued)"."""
    rest = list(range(keys, len(table.columns)))
    parts: list[Table] = []
    while rest:
        take = 1
        while take < len(rest):
            trial = _part(table, [*range(keys), *rest[: take + 1]], None)
            if natural_width(console, trial) > console.width:
                break
            take += 1
        title: Any = table.title if not parts else "(continued)"
        parts.append(_part(table, [*range(keys), *rest[:take]], title))
        rest = rest[take:]
    return parts or [table]


def _part(table: Table, indices: list[int], title: Any) -> Table:
    """A copy of ``table`` (its box, styles, rows) with only the columns at ``indices``."""
    part = copy.copy(table)
    part.title = title
    part.columns = [
        dataclasses.replace(table.columns[i], _index=n, _cells=list(table.columns[i].cells))
        for n, i in enumerate(indices)
    ]
    part.rows = list(table.rows)
    return part


def print_text(console: Console, *renderables: RenderableType, **kwargs: Any) -> None:
    """Lines of prose: wrapped at word boundaries to a terminal's (or ``$COLUMNS``) width,
    never wrapped into a pipe or a file (a reader greps whole lines)."""
    console.print(*renderables, soft_wrap=_piped(console), **kwargs)


def wide_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--wide``: every column in one table whatever the width (passed as ``wide: bool``);
    without it a table wider than the terminal (or 120 columns into a pipe) is split."""
    return click.option(
        "--wide",
        is_flag=True,
        help="Every column in one table, however wide (without it, a table wider than the "
        "terminal, or 120 columns into a pipe, is split into tables that fit).",
    )(f)


def emit_json(obj: Any) -> None:
    """The one JSON object of a ``--json`` run (strict JSON: no NaN or Infinity)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


__all__ = [
    "PIPE_WIDTH",
    "emit_json",
    "fit_table",
    "natural_width",
    "print_table",
    "print_text",
    "split_table",
    "stderr_console",
    "stdout_console",
    "wide_option",
]
