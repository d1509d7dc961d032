"""The sweep itself (run what is missing, keep what finished) and its summary."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from hotremove.sweep.executors import Lost, check_pool, default_workers, execute, open_pool
from hotremove.sweep.grid import Grid, RunSpec
from hotremove.sweep.results import ResultsError, ResultsFile, Torn
from hotremove.sweep.rows import _cell, _json, header, parse_row

log = structlog.get_logger("hotremove.sweep")

# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    grid: Grid
    output: Path
    rows: dict[str, dict[str, Any]]  # run id → typed row, for this grid's runs in the file
    new: int = 0
    skipped: int = 0
    lost: list[Lost] = field(default_factory=list)
    stray: int = 0  # rows in the file that are no run of this grid
    wall_seconds: float = 0.0
    executor: str = ""

    @property
    def missing(self) -> list[RunSpec]:
        return [r for r in self.grid.runs if r.run_id not in self.rows]

    @property
    def exit_status(self) -> int:
        if self.missing or any(row["status"] != "ok" for row in self.rows.values()):
            return 1
        return 0


def existing_rows(
    grid: Grid, output: Path, *, torn: Torn = "error"
) -> tuple[dict[str, dict[str, Any]], int]:
    """Typed rows of ``output`` that are runs of ``grid`` (first row per run), and how many
    rows are not; the file verified (format, checksums, the grid's columns) as it is read."""
    _, raw = ResultsFile.read(output, header(grid), torn=torn)
    return _index_rows(grid, raw, output)


def _index_rows(
    grid: Grid, raw: list[dict[str, str]], source: Path
) -> tuple[dict[str, dict[str, Any]], int]:
    ids = {r.run_id for r in grid.runs}
    rows: dict[str, dict[str, Any]] = {}
    stray = 0
    for number, r in enumerate(raw, start=2):
        run_id = r.get("run_id", "")
        if run_id not in ids:
            stray += 1
        elif run_id not in rows:
            try:
                rows[run_id] = parse_row(r, grid)
            except ValueError as exc:  # typed and bounded even when its checksum holds
                raise ResultsError(f"{source}: line {number}: {exc}") from None
    return rows, stray


def sweep(
    grid: Grid,
    output: Path,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    log_level: str = "warning",
    on_start: Callable[[int, int, str], None] | None = None,
    on_row: Callable[[RunSpec, dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every run of ``grid`` that has no row in ``output`` yet; rows land as runs finish.

    ``on_start(todo, done, executor description)`` is called once the pool is up;
    ``on_row(run, row)`` after each row is written. KeyboardInterrupt stops the pool and
    propagates; the rows written so far stay.
    """
    started = time.perf_counter()
    check_pool(executor, scheduler=scheduler, workers=workers)  # before the file is made
    results = ResultsFile(output, header(grid))
    previous = results.open(resume=resume, overwrite=overwrite)
    try:
        rows, stray = _index_rows(grid, previous, output)
        todo = [r for r in grid.runs if r.run_id not in rows]
        result = SweepResult(grid, output, rows, skipped=len(rows), stray=stray)
        if not todo:
            if on_start:
                on_start(0, len(rows), "nothing to run")
            return result
        if workers is None and executor == "local":
            workers = min(default_workers(), len(todo))
        pool = open_pool(executor, scheduler=scheduler, workers=workers, log_level=log_level)
        result.executor = pool.description
        if on_start:
            on_start(len(todo), len(rows), pool.description)

        def land(run: RunSpec, row: dict[str, Any]) -> None:
            row = {**row, "run_index": run.index, **run.values}
            results.append(row)
            typed = {k: v for k, v in row.items() if k not in run.values}
            rows[run.run_id] = parse_row({k: _cell(v) for k, v in typed.items()}, grid)
            result.new += 1
            if on_row:
                on_row(run, rows[run.run_id])

        try:
            result.lost = execute(pool, todo, grid.name, land, log_level=log_level)
        except BaseException:
            pool.close(cancel=True)
            raise
        pool.close()
        for lost in result.lost:
            log.warning("run_lost", run_id=lost.run.run_id, reason=lost.reason)
        result.wall_seconds = time.perf_counter() - started
        return result
    finally:
        results.close()


# --------------------------------------------------------------------------- summary


@dataclass
class Group:
    values: dict[str, Any]  # shown axis key → value
    rows: list[dict[str, Any]]
    expected: int

    def mean(self, column: str) -> float | None:
        numbers = [r[column] for r in self.rows if r.get(column) is not None]
        return statistics.fmean(numbers) if numbers else None

    def span(self, column: str) -> tuple[float, float] | None:
        numbers = [r[column] for r in self.rows if r.get(column) is not None]
        return (min(numbers), max(numbers)) if numbers else None

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r["status"] == status)


def summarize(grid: Grid, rows: dict[str, dict[str, Any]]) -> list[Group]:
    """One group per combination of the shown axes (plot.x and plot.lines), in grid order;
    the other axes (seeds by default) are aggregated."""
    shown = [k for k in grid.axis_keys if k not in grid.aggregated]
    groups: dict[str, Group] = {}
    for run in grid.runs:
        values = {k: run.values[k] for k in shown}
        key = _json(values)
        group = groups.setdefault(key, Group(values, [], 0))
        group.expected += 1
        if run.run_id in rows:
            group.rows.append(rows[run.run_id])
    return list(groups.values())
