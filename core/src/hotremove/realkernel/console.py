"""Reading the guest's answer: ``RK <record> key=value …`` lines on the serial console.

The console also carries the kernel's own messages (a panic, an oops, a warning), which can
land between two of the guest's lines; only whole lines that start with ``RK `` are records.
Values never contain spaces (the guest replaces them with ``_``), except ``RK dmesg``, whose
rest of line is kept as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Kernel messages that mean the guest died rather than answered.
_PANIC = re.compile(r"Kernel panic - not syncing:.*|BUG: .*|Oops: .*")


@dataclass(frozen=True)
class Record:
    kind: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""  #: the raw rest of the line (``dmesg`` records)

    def int(self, key: str, default: int = 0) -> int:
        try:
            return int(self.fields[key])
        except (KeyError, ValueError):
            return default

    def float(self, key: str, default: float = 0.0) -> float:
        try:
            return float(self.fields[key])
        except (KeyError, ValueError):
            return default


def parse(text: str) -> list[Record]:
    """Every ``RK`` record of a console log, in order."""
    records: list[Record] = []
    for raw in text.replace("\r", "").splitlines():
        if not raw.startswith("RK "):
            continue
        kind, _, rest = raw[3:].strip().partition(" ")
        if not kind:
            continue
        fields: dict[str, str] = {}
        if kind != "dmesg":
            for token in rest.split():
                key, sep, value = token.partition("=")
                if sep:
                    fields[key] = value
        records.append(Record(kind, fields, rest))
    return records


def panic_line(text: str) -> str | None:
    """The first kernel line (not a guest record) saying it panicked or hit a BUG."""
    for line in text.replace("\r", "").splitlines():
        if line.startswith("RK "):
            continue
        m = _PANIC.search(line)
        if m:
            return m.group(0).strip()
    return None


def last_line(text: str) -> str:
    """The console's last non-empty line (for "ended without a result" messages)."""
    for line in reversed(text.replace("\r", "").splitlines()):
        if line.strip():
            return line.strip()[:200]
    return "(empty console)"


def first(records: list[Record], kind: str, **match: str) -> Record | None:
    """The first record of ``kind`` whose fields equal ``match``."""
    for rec in records:
        if rec.kind == kind and all(rec.fields.get(k) == v for k, v in match.items()):
            return rec
    return None


def every(records: list[Record], kind: str, **match: str) -> list[Record]:
    return [
        rec
        for rec in records
        if rec.kind == kind and all(rec.fields.get(k) == v for k, v in match.items())
    ]
