"""TOML text as data, its nesting bounded.

:mod:`tomllib` parses nested arrays and inline tables recursively: ``x = [[[…]]]`` two
thousand deep raises :class:`RecursionError` instead of a decode error, and data nested a few
hundred deep would still overflow the stack of whatever walks it next (validation, deep
copies, hashing). No scenario, grid or option value nests anywhere near :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

#: the deepest nesting of tables and arrays accepted (a scenario nests 3 or 4 deep)
MAX_DEPTH = 32


class TomlError(ValueError):
    """TOML text that is not data we read: one line saying why."""


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``; every failure (a decode error, too deep a nesting) a
    :class:`TomlError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(str(exc)) from None
    except RecursionError:
        raise TomlError(
            f"{_deep_key(text)}nested too deep (at most {MAX_DEPTH} arrays or tables)"
        ) from None
    _check_depth(data)
    return data


def _deep_key(text: str) -> str:
    """``"KEY: "`` of the first line that opens more than :data:`MAX_DEPTH` brackets (the
    parser gave up without saying where), else nothing."""
    for line in text.splitlines():
        if line.count("[") + line.count("{") > MAX_DEPTH:
            key = re.match(r"\s*([^=\s][^=]*?)\s*=", line)
            return f"{key.group(1)}: " if key else ""
    return ""


def _check_depth(data: dict[str, Any]) -> None:
    """Walk the data without recursion; the first value past :data:`MAX_DEPTH` is named."""
    stack: list[tuple[str, Any, int]] = [(key, value, 1) for key, value in data.items()]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TomlError(f"{where}: nested too deep (at most {MAX_DEPTH} arrays or tables)")
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}", v, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((where, v, depth + 1) for v in value)


__all__ = ["MAX_DEPTH", "TomlError", "parse_toml"]
