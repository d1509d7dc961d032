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
from typing import Any, TextIO

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

from hotremove.errors import HotremoveError

#: Width for human output when stdout is not a terminal (rich would default to 80 columns).
PIPE_WIDTH = 120


def _piped(console: Console) -> bool:
    return not console.is_terminal and "COLUMNS" not in os.environ


class _TrimmedLines:
    """A pipe's or a file's stdout without the spaces rich pads lines with (a centred title,
    a table's last column): a reader greps and diffs whole lines, not padding."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""  # trailing spaces: written only if more text follows on the line

    def write(self, text: str) -> int:
        out: list[str] = []
        for line, newline in _lines(self.pending + text):
            if newline:
                out.append(line.rstrip(" ") + "\n")
                self.pending = ""
            else:
                body = line.rstrip(" ")
                out.append(body)
                self.pending = line[len(body) :]
        self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")


def _lines(text: str) -> list[tuple[str, bool]]:
    """``text`` split into (line, ends with a newline) pieces."""
    parts = text.split("\n")
    return [(part, True) for part in parts[:-1]] + [(parts[-1], False)]


def check_columns() -> None:
    """``$COLUMNS`` must be a positive number of columns when set (0 or "abc" would make rich
    print nothing at all, and say nothing about it)."""
    value = os.environ.get("COLUMNS")
    if value is None or value == "":
        return
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= 100_000):
        shown = value if len(value) <= 20 else value[:17] + "..."
        raise HotremoveError(
            f"COLUMNS: {shown!r} is not a number of columns (unset it, or give the terminal's "
            "width)"
        )


def stdout_console() -> Console:
    """Human results: the terminal's width, or :data:`PIPE_WIDTH` into a pipe or a file —
    where lines of prose are never wrapped (``soft_wrap``) and carry no trailing padding."""
    check_columns()
    console = Console(highlight=False)
    if _piped(console):
        console.width = PIPE_WIDTH
        console.soft_wrap = True
        console.file = _TrimmedLines(sys.stdout)  # type: ignore[assignment]
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
        _print_whole(console, part)


def _print_whole(console: Console, table: Table) -> None:
    """``table`` uncut even when one column and its keys are wider than the console (a very
    narrow terminal): the console is widened for it (a terminal folds the long lines)."""
    width = console.width
    natural = natural_width(console, table)
    if natural > width:
        console.width = natural
    try:
        console.print(table)
    finally:
        console.width = width


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
    "check_columns",
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
