"""The fuzz results file and its summary.

One CSV row per (case, kernel) judged, in sweep's results format
(:class:`hotremove.sweep.results.ResultsFile`: appended one whole line per write, every row
with its format and checksum, a torn last line dropped on resume), so an interrupted fuzz
resumes where it stopped: a (case, kernel) already in the file is not run again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hotremove.realkernel.fuzz.generate import Case
from hotremove.realkernel.fuzz.judge import Verdict
from hotremove.sweep.columns import TRAILER_COLUMNS

COLUMNS = [
    "case",
    "seed",
    "kernel",
    "status",
    "types",
    "modes",
    "failing",
    "error",
    "guest_seconds",
    "finished",
    *TRAILER_COLUMNS,
]


def categories(case: Case) -> list[tuple[str, str]]:
    """The (type, data mode) of each filesystem of ``case`` (``-``: the type has none)."""
    from hotremove.fs.registry import resolve

    scn = case.scenario()
    return [(fs.type, resolve(fs.type).data_mode(fs) or "-") for fs in scn.filesystem]


def row(case: Case, kernel: str, verdict: Verdict, guest_seconds: float, now: float) -> dict:
    cats = categories(case)
    return {
        "case": case.number,
        "seed": case.seed,
        "kernel": kernel,
        "status": verdict.status,
        "types": json.dumps([t for t, _ in cats]),
        "modes": json.dumps([m for _, m in cats]),
        "failing": json.dumps(verdict.failing),
        "error": verdict.error,
        "guest_seconds": round(guest_seconds, 1),
        "finished": round(now, 1),
    }


def done(rows: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """(case, kernel) pairs already judged (an error counts as done: ``--retry-errors`` runs
    them again)."""
    return {(int(r["case"]), str(r["kernel"])) for r in rows}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Agreement by kernel × filesystem type × data mode. A case counts once under every
    (type, mode) it mounts; errors (no guest result) are counted apart, not as agreement."""
    table: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: {"cases": 0, "agree": 0, "disagree": 0, "error": 0}
    )
    for r in rows:
        types, modes = json.loads(r["types"]), json.loads(r["modes"])
        for cat in sorted(set(zip(types, modes, strict=True))):
            cell = table[(str(r["kernel"]), *cat)]
            cell["cases"] += 1
            cell[str(r["status"])] += 1
    out = []
    for (kernel, fstype, mode), cell in sorted(table.items(), key=_order):
        judged = cell["agree"] + cell["disagree"]
        rate = cell["agree"] / judged if judged else None
        out.append({"kernel": kernel, "type": fstype, "mode": mode, **cell, "agreement": rate})
    return out


def totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kernel: cases, agree, disagree, error, agreement (over judged cases)."""
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"cases": 0, "agree": 0, "disagree": 0, "error": 0}
    )
    for r in rows:
        per[str(r["kernel"])]["cases"] += 1
        per[str(r["kernel"])][str(r["status"])] += 1
    for cell in per.values():
        judged = cell["agree"] + cell["disagree"]
        cell["agreement"] = cell["agree"] / judged if judged else None
    return dict(sorted(per.items(), key=lambda kv: _version_key(kv[0])))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _order(item: tuple[tuple[str, str, str], Any]) -> tuple[Any, ...]:
    (kernel, fstype, mode), _ = item
    return (_version_key(kernel), fstype, mode)
