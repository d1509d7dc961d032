"""Result rows: one run executed anywhere, its report flattened into columns."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from hotremove.scenario import validate
from hotremove.sim.report import not_clean
from hotremove.sweep.columns import (
    HEAD_COLUMNS,
    REPORT_COLUMNS,
    STATUSES,
    TIMING_COLUMNS,
    TRAILER_COLUMNS,
)

if TYPE_CHECKING:
    from hotremove.sweep.grid import Grid

log = structlog.get_logger("hotremove.sweep")

#: At most this many entries of the report's ``failed`` list are kept in a row.
FAILED_KEPT = 50

# --------------------------------------------------------------------------- rows


def header(grid: Grid) -> list[str]:
    return [*HEAD_COLUMNS, *grid.axis_keys, *REPORT_COLUMNS, *TIMING_COLUMNS, *TRAILER_COLUMNS]


def identity(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its wall-clock columns: equal for equal scenarios on any executor."""
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


#: wall times of a run's phases: not results (two runs of one point differ in them), so not
#: in ``extra``, whose equality says two runs gave the same answer
PHASE_TIMES = ("build_seconds", "verify_seconds")


def flatten_report(report: dict[str, Any]) -> dict[str, Any]:
    """The run's JSON report (``Report.as_dict()``) as the scalar columns of one row."""
    row: dict[str, Any] = {}
    verify = report.get("verify") or {}
    failed = report.get("failed", [])
    derived = {
        "failed_pages": len(failed),
        "failed": failed[:FAILED_KEPT],
        "check_failures": len(report.get("checks", [])),
        "verify_ok": verify.get("ok", False),
        "verify_files_checked": verify.get("files_checked", 0),
        "verify_mismatches": len(verify.get("mismatches", [])),
    }
    for column, kind in REPORT_COLUMNS.items():
        if column == "extra":
            continue
        value = derived[column] if column in derived else report.get(column)
        row[column] = _json(value) if kind == "json" else value
    extra = {
        k: v
        for k, v in report.items()
        if k not in REPORT_COLUMNS and k not in TIMING_COLUMNS and k not in PHASE_TIMES
    }
    if "per_block" in extra:  # each call's wall time is a timing too
        extra["per_block"] = [
            {k: v for k, v in b.items() if k != "wall_seconds"} for b in extra["per_block"]
        ]
    row["extra"] = _json(extra)
    row["wall_seconds"] = report.get("wall_seconds")
    return row


def failure_reason(report: dict[str, Any]) -> str:
    """Why a run is not ``ok``, in one line ("" when it is)."""
    if report.get("ok"):
        return ""
    parts = []
    if not report.get("offlined"):
        failed = report.get("failed", [])
        first = f" (first: pfn {failed[0]['pfn']:#x} {failed[0]['reason']})" if failed else ""
        parts.append(f"not offlined: {len(failed)} page(s) failed{first}")
    if report.get("checks"):
        parts.append(f"{len(report['checks'])} check failure(s)")
    if report.get("lock_violations"):
        parts.append(f"{len(report['lock_violations'])} lock violation(s)")
    verify = report.get("verify")
    if verify is None:
        parts.append("not verified")
    elif not verify.get("ok"):
        bad = not_clean(verify.get("fsck", {}))
        parts.append(
            "verification failed: "
            + ", ".join(
                ([bad] if bad else []) + [f"{len(verify.get('mismatches', []))} mismatch(es)"]
            )
        )
    return "; ".join(parts) or "not ok"


class RunInterrupted(Exception):
    """A run stopped by a signal before it finished: it has no row (``--resume`` reruns it)."""


_worker_ready = False


def _prepare_worker(log_level: str) -> None:
    """Once per process: logs to stderr (never stdout, which carries results)."""
    global _worker_ready
    if _worker_ready:
        return
    if not structlog.is_configured():
        from hotremove import log as hlog

        hlog.configure(log_level, "json")
    _worker_ready = True


_PLUGINS: Any = None


def _load_plugins_cached() -> Any:
    global _PLUGINS
    if _PLUGINS is None:
        from hotremove.plugins import load_plugins

        _PLUGINS = load_plugins()
    return _PLUGINS


def run_one(
    run_id: str, scenario: dict[str, Any], name: str, log_level: str = "warning"
) -> dict[str, Any]:
    """One run, wherever it executes: build, offline, verify → the row's report columns.

    A pure function of ``(run_id, scenario)`` except for :data:`TIMING_COLUMNS`. Exceptions
    inside the run become an ``error`` row (they are the run's result, not the worker's).
    """
    from hotremove.sim.runner import run_scenario
    from hotremove.workload import default_image_cache

    _prepare_worker(log_level)
    start = time.perf_counter()
    row: dict[str, Any] = {"run_id": run_id, "status": "error", "reason": ""}
    try:
        scn = validate(scenario)
        with tempfile.TemporaryDirectory(prefix=f"hotremove-sweep-{run_id}-") as tmp:
            report = run_scenario(
                scn,
                name=name,
                plugins=_load_plugins_cached(),
                workdir=Path(tmp),
                image_cache=default_image_cache(),  # runs of a grid share their images
            )
            data = report.as_dict()
            if data.get("interrupted"):  # backed off on a signal: no result, no row
                raise RunInterrupted(f"run {run_id} was interrupted")
            row.update(flatten_report(data))
            row["status"] = "ok" if report.ok else "failed"
            row["reason"] = failure_reason(data)
            # image paths live in a temporary directory: keep rows comparable between runs
            for key, value in row.items():
                if isinstance(value, str) and tmp in value:
                    row[key] = value.replace(tmp + os.sep, "").replace(tmp, ".")
    except RunInterrupted:
        raise  # lost, not a result: --resume runs it again
    except Exception as exc:
        row["reason"] = " ".join(f"{type(exc).__name__}: {exc}".split())
    row["run_seconds"] = time.perf_counter() - start
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return " ".join(value.split()) if "\n" in value or "\r" in value else value
    if isinstance(value, int):
        return str(value)
    return _json(value)


#: the largest count a row may hold (pages, I/Os, bytes): 2**62, far past any run
MAX_COUNT = 1 << 62
_INT_RE = re.compile(r"^-?[0-9]{1,19}$", re.ASCII)
#: integer columns that may be negative
SIGNED: tuple[str, ...] = ()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a row holds")


def _parse(kind: str, text: str, column: str = "") -> Any:
    """One cell back to its value, typed and bounded: an edited file whose checksums were
    recomputed is still refused where a value is impossible (a ValueError naming why)."""
    if text == "" and kind != "str":
        return None
    if kind == "int":
        if not _INT_RE.match(text):
            raise ValueError(f"{text[:40]!r} is not an integer")
        value = int(text)
        if abs(value) > MAX_COUNT or (value < 0 and column not in SIGNED):
            raise ValueError(f"{value} is out of range")
        return value
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{text[:40]!r} is not a finite, non-negative number")
        return value
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text[:40]!r} is not true or false")
        return text == "true"
    if kind == "json":
        try:
            return json.loads(text, parse_constant=_no_constant)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("is not JSON") from None
    return text


def _check_blocks(value: Any) -> None:
    """``blocks``: memory block numbers, each once."""
    if not isinstance(value, list) or not value:
        raise ValueError("is not a list of memory blocks")
    for b in value:
        if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b < 1 << 32:
            raise ValueError(f"{json.dumps(b)[:40]} is not a memory block number")
    if len(set(value)) != len(value):
        raise ValueError("names a memory block twice")


def parse_row(raw: dict[str, str], grid: Grid) -> dict[str, Any]:
    """A CSV row back to typed values (axis columns from the grid itself, by run id)."""
    kinds = {**HEAD_COLUMNS, **REPORT_COLUMNS, **TIMING_COLUMNS}
    row: dict[str, Any] = {}
    for key, text in raw.items():
        if key in kinds:
            try:
                row[key] = _parse(kinds[key], text or "", key)
                if key == "blocks" and row[key] is not None:
                    _check_blocks(row[key])
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
    if row.get("status") not in STATUSES:
        raise ValueError(
            f"status: {str(row.get('status'))[:40]!r} is not one of {', '.join(STATUSES)}"
        )
    return row
