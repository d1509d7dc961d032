"""A scenario's tables as TOML, for the shrunk cases (the scenario loader reads it back with
:mod:`tomllib`; the standard library writes no TOML). Only what a generated scenario holds:
tables of strings, numbers, booleans and flat lists, and one array of tables."""

from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _table(lines: list[str], header: str, table: dict[str, Any]) -> None:
    lines.append(header)
    lines.extend(f"{key} = {_value(value)}" for key, value in table.items())
    lines.append("")


def dumps(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, value in data.items():
        if isinstance(value, list):
            for item in value:
                _table(lines, f"[[{section}]]", item)
        else:
            _table(lines, f"[{section}]", value)
    return "\n".join(lines)
