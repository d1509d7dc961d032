"""Integer options as the scenario files take integers: ASCII digits only.

``click.INT`` is Python's ``int()``, which also reads ``１`` (full-width), ``1_000``, ``' 1'``
and ``+1``; a scenario's ``workload.seed`` refuses them all, so ``--seed`` must too. Every
integer option of the command line is a :class:`Digits`: one line naming the option, exit 2.
"""

from __future__ import annotations

import re
from typing import Any

import click

_ASCII_DIGITS = re.compile(r"[0-9]+")


class Digits(click.IntRange):
    """A non-negative integer written in ASCII digits, within ``min``..``max``."""

    def __init__(self, min: int = 0, max: int | None = None) -> None:
        super().__init__(min=min, max=max)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not _ASCII_DIGITS.fullmatch(value):
            self.fail(f"{value!r} is not a whole number in ASCII digits (0-9)", param, ctx)
        return super().convert(value, param, ctx)


__all__ = ["Digits"]
