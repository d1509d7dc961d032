"""Sweeps: a grid of scenarios, run on a process pool or a Dask cluster, one result row per run.

A **grid file** (TOML) names a base scenario and the axes to vary::

    name = "seed-question"                  # optional (default: the file's stem)
    base = "../scenarios/ext2.toml"         # a scenario file (relative to the grid), or a table:
    # [base.memory] ... [[base.filesystem]] ...

    [axes]                                  # any scenario key; the product of all axes is run
    "workload.dirty" = [0, 0.1, 0.3, 0.6, 1.0]
    "remove.strategy" = ["auto", "writeback"]
    "filesystem[0].block_size" = [1024, 4096]   # one filesystem; filesystem[*] = all of them
    "workload.seed" = {range = [1, 5]}          # 1, 2, 3, 4, 5 (both ends; optional step)

    [plot]                                  # optional, see PlotSpec
    x = "workload.dirty"

Every combination is validated up front (an impossible one is a one-line error naming the
axis), and gets a **run id**: a hash of its validated scenario's non-default values. Equal
scenarios have equal ids whatever executor runs them; a changed base gives new ids, so
``--resume`` never mistakes a stale row for a finished run; a key the schema gains later (with a
default) changes no id, so results survive upgrades.

**Runs** are pure functions ``run_one(run_id, scenario dict) → row`` executed on any pool with
``submit``/``as_completed``: :class:`LocalPool` (``concurrent.futures.ProcessPoolExecutor``)
or :class:`DaskPool` (``distributed.Client``; Dask does the distribution, the retries of lost
workers and its dashboard). Both go through :func:`execute`, the one code path.

**Results** are CSV, one line per finished run, appended with a single ``write(2)`` on an
``O_APPEND`` descriptor as each run finishes, so an interrupted sweep keeps every finished row
(a torn last line is cut off on resume). A run that fails — offline incomplete, a check or
verification failed (``status = failed``) or an exception inside the run (``status = error``) —
is a row too; only a run whose worker was lost (``BrokenProcessPool``, a cancelled future)
has no row, is reported, and runs again with ``--resume``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import csv
import fcntl
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import statistics
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from hotremove.errors import HotremoveError, ScenarioError
from hotremove.scenario import FilesystemConfig, Scenario, validate

log = structlog.get_logger("hotremove.sweep")

MAX_RUNS = 100_000
MAX_AXIS_VALUES = 10_000
#: Seeds are repetitions, not conditions: by default the summary and the plot average over them.
REPEAT_AXES = ("workload.seed",)
#: At most this many entries of the report's ``failed`` list are kept in a row.
FAILED_KEPT = 50


class GridError(ScenarioError):
    """A grid file is malformed; the message names the key (``axes.workload.dirty: ...``)."""


# --------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Axis:
    key: str  # "workload.dirty", "filesystem[0].block_size", "filesystem[*].size"
    values: tuple[Any, ...]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


@dataclass(frozen=True)
class RunSpec:
    index: int
    run_id: str
    values: dict[str, Any]  # axis key → value, as the grid wrote it
    scenario: dict[str, Any]  # the validated scenario's non-default values (see minimal())

    def label(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.values.items())


@dataclass(frozen=True)
class PlotSpec:
    """``[plot]``: ``x`` (an axis), ``y`` (a numeric result column), ``lines`` (axes: one line
    per combination; the remaining axes are averaged), ``title``, ``logy``, ``labels``
    (axis value → legend text) and ``ratio`` (two values of the first ``lines`` axis: the
    figure marks how many times the first's y is the second's at the last x)."""

    x: str
    y: str = "simulated_seconds"
    lines: tuple[str, ...] = ()
    title: str | None = None
    logy: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    ratio: tuple[Any, Any] | None = None


@dataclass
class Grid:
    name: str
    source: str
    axes: list[Axis]
    runs: list[RunSpec]
    plot: PlotSpec
    base: dict[str, Any]

    @property
    def axis_keys(self) -> list[str]:
        return [a.key for a in self.axes]

    @property
    def aggregated(self) -> list[str]:
        """Axes averaged over in the summary and the plot (seeds, unless the plot names them)."""
        shown = {self.plot.x, *self.plot.lines}
        return [k for k in self.axis_keys if k not in shown]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_KEY_RE = re.compile(r"^(?P<section>[a-z_]+)(?:\[(?P<index>\d+|\*)\])?\.(?P<field>[a-z_]+)$")
_GRID_KEYS = ("name", "base", "axes", "plot")
_PLOT_KEYS = ("x", "y", "lines", "title", "logy", "labels", "ratio")


def load_grid(path: Path | str) -> Grid:
    """Read, validate and expand a grid file; every problem is a one-line :class:`GridError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(f"{path}: no such grid file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: cannot read grid: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: invalid TOML: {exc}") from None
    default_name = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem)[:64] or "grid"
    return parse_grid(data, source=str(path), root=path.parent, default_name=default_name)


def parse_grid(
    data: dict[str, Any],
    *,
    source: str = "<grid>",
    root: Path | None = None,
    default_name: str = "grid",
) -> Grid:
    def fail(message: str) -> GridError:
        return GridError(f"{source}: {message}")

    for key in data:
        if key not in _GRID_KEYS:
            raise fail(f"{key}: unknown key (a grid has {', '.join(_GRID_KEYS)})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise fail("name: 1-64 characters from A-Z a-z 0-9 _ . -")
    base = _base(data, root or Path("."), fail)
    raw_axes = data.get("axes")
    if not isinstance(raw_axes, dict) or not raw_axes:
        raise fail('axes: missing (a table such as [axes] "workload.dirty" = [0, 0.5, 1])')
    axes = [_axis(key, spec, base, fail) for key, spec in _flatten_axes(raw_axes)]
    count = math.prod(len(a.values) for a in axes)
    if count > MAX_RUNS:
        raise fail(f"axes: {count} runs; a grid may have at most {MAX_RUNS}")
    runs = _expand(axes, base, fail)
    return Grid(
        name=name,
        source=source,
        axes=axes,
        runs=runs,
        plot=_plot_spec(data.get("plot", {}), axes, fail),
        base=base,
    )


def _base(data: dict[str, Any], root: Path, fail: Callable[[str], GridError]) -> dict[str, Any]:
    raw = data.get("base")
    if raw is None:
        raise fail("base: missing (a scenario table, or the path of a scenario file)")
    if isinstance(raw, str):
        from hotremove.scenario import load

        path = Path(raw) if Path(raw).is_absolute() else root / raw
        try:
            return load(path).model_dump()
        except ScenarioError as exc:
            raise fail(f"base: {exc}") from None
    if not isinstance(raw, dict):
        raise fail("base: must be a scenario table or the path of a scenario file")
    try:
        return validate(raw).model_dump()
    except ScenarioError as exc:
        raise fail(f"base.{exc}") from None


def _flatten_axes(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``[axes] "workload.dirty" = [...]``, ``workload.dirty = [...]`` (TOML nests it) and
    ``[axes.workload] dirty = [...]`` are the same axis."""
    for key, value in table.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and "range" not in value:
            yield from _flatten_axes(value, full)
        else:
            yield full, value


def _axis(key: str, spec: Any, base: dict[str, Any], fail: Callable[[str], GridError]) -> Axis:
    where = f"axes.{key}"
    match = _KEY_RE.match(key)
    if match is None:
        raise fail(
            f"{where}: not a scenario key (write section.key, e.g. workload.dirty, "
            "or filesystem[0].block_size)"
        )
    section, index, name = match.group("section", "index", "field")
    if section not in base:
        raise fail(f"{where}: unknown section {section!r} (sections: {', '.join(sorted(base))})")
    if section == "filesystem":
        if index is None:
            raise fail(
                f"{where}: filesystem is a list: name one with filesystem[0].{name} "
                f"or all with filesystem[*].{name}"
            )
        count = len(base["filesystem"])
        if count == 0:
            raise fail(f"{where}: the base scenario has no filesystem")
        if index != "*" and int(index) >= count:
            raise fail(f"{where}: the base scenario has {count} filesystem(s), numbered from 0")
        fields = list(FilesystemConfig.model_fields)
    else:
        if index is not None:
            raise fail(f"{where}: {section} is not a list (write {section}.{name})")
        fields = list(base[section])
    if name not in fields:
        raise fail(f"{where}: unknown key ({section} has {', '.join(fields)})")
    values = _axis_values(spec, lambda message: fail(f"{where}: {message}"))
    seen: list[Any] = []
    for value in values:
        if any(value == s and type(value) is type(s) for s in seen):
            raise fail(f"{where}: value {json.dumps(value)} appears twice")
        seen.append(value)
    return Axis(key, tuple(values))


def _axis_values(spec: Any, fail: Callable[[str], GridError]) -> list[Any]:
    if isinstance(spec, list):
        if not spec:
            raise fail("no values (give at least one)")
        if len(spec) > MAX_AXIS_VALUES:
            raise fail(f"{len(spec)} values; an axis may have at most {MAX_AXIS_VALUES}")
        return list(spec)
    if isinstance(spec, dict):
        extra = set(spec) - {"range", "step"}
        if extra:
            raise fail(
                f"unknown key {sorted(extra)[0]!r} (write {{range = [start, stop], step = 1}})"
            )
        bounds, step = spec["range"], spec.get("step", 1)
        numbers = [*bounds, step] if isinstance(bounds, list) else []
        if len(numbers) != 3 or not all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
        ):
            raise fail("range must be [start, stop] with numbers (and a number step)")
        start, stop = bounds
        if step <= 0 or stop < start:
            raise fail("range needs start <= stop and a positive step")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_AXIS_VALUES:
            raise fail(f"range has {count} values; an axis may have at most {MAX_AXIS_VALUES}")
        if all(isinstance(n, int) for n in numbers):
            return [start + i * step for i in range(count)]
        return [round(start + i * step, 12) for i in range(count)]
    raise fail(
        "must be a list of values or a {range = [start, stop]} table "
        "(a fixed value belongs in the base scenario)"
    )


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    match = _KEY_RE.match(key)
    assert match is not None
    section, index, name = match.group("section", "index", "field")
    if section != "filesystem":
        data[section][name] = value
        return
    targets = data["filesystem"] if index == "*" else [data["filesystem"][int(index)]]
    for fs in targets:
        fs[name] = value


def minimal(scn: Scenario) -> dict[str, Any]:
    """The scenario as its non-default values (JSON-able): what a run sends to its worker and
    what its id hashes. A key the schema gains later, with a default, changes neither."""

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            pruned = {k: prune(v) for k, v in value.items()}
            return {k: v for k, v in pruned.items() if v != {}}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    return prune(scn.model_dump(mode="json", exclude_defaults=True))


def scenario_id(scenario: dict[str, Any]) -> str:
    """The run id: a hash of the validated scenario's non-default values (sorted JSON)."""
    text = json.dumps(scenario, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _expand(
    axes: list[Axis], base: dict[str, Any], fail: Callable[[str], GridError]
) -> list[RunSpec]:
    runs: list[RunSpec] = []
    by_id: dict[str, RunSpec] = {}
    for index, combo in enumerate(itertools.product(*(a.values for a in axes))):
        values = {a.key: v for a, v in zip(axes, combo, strict=True)}
        data = copy.deepcopy(base)
        for key, value in values.items():
            _assign(data, key, value)
        try:
            scn = validate(data)
        except ScenarioError as exc:
            raise fail(_blame(str(exc), values, index)) from None
        dumped = minimal(scn)
        run = RunSpec(index, scenario_id(dumped), values, dumped)
        if run.run_id in by_id:
            raise fail(
                f"axes: runs {by_id[run.run_id].index} and {index} are the same scenario "
                f"({run.label()})"
            )
        by_id[run.run_id] = run
        runs.append(run)
    return runs


def _blame(message: str, values: dict[str, Any], index: int) -> str:
    """Name the axis a scenario error is about when it names one, else the whole run."""
    head, _, rest = message.partition(": ")
    for key, value in values.items():
        if _INDEX_RE.sub("[]", key) == _INDEX_RE.sub("[]", head):
            return f"axes.{key} = {json.dumps(value)}: {rest}"
    assignments = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    return f"run {index} ({assignments}): {message}"


_INDEX_RE = re.compile(r"\[(\d+|\*)\]")


def _plot_spec(raw: Any, axes: list[Axis], fail: Callable[[str], GridError]) -> PlotSpec:
    if not isinstance(raw, dict):
        raise fail("plot: must be a table")
    for key in raw:
        if key not in _PLOT_KEYS:
            raise fail(f"plot.{key}: unknown key (plot has {', '.join(_PLOT_KEYS)})")
    keys = [a.key for a in axes]
    numeric = [a.key for a in axes if a.numeric and a.key not in REPEAT_AXES]
    default_x = "workload.dirty" if "workload.dirty" in keys else (numeric or keys)[0]
    x = raw.get("x", default_x)
    if x not in keys:
        raise fail(f"plot.x: {x!r} is not an axis of this grid (axes: {', '.join(keys)})")
    y = raw.get("y", "simulated_seconds")
    if REPORT_COLUMNS.get(y) not in ("int", "float"):
        numbers = [k for k, t in REPORT_COLUMNS.items() if t in ("int", "float")]
        raise fail(f"plot.y: {y!r} is not a numeric result column ({', '.join(numbers)})")
    lines = raw.get("lines", [k for k in keys if k != x and k not in REPEAT_AXES])
    if not isinstance(lines, list) or not all(isinstance(k, str) for k in lines):
        raise fail("plot.lines: must be a list of axis keys")
    for key in lines:
        if key not in keys or key == x:
            raise fail(f"plot.lines: {key!r} is not an axis of this grid other than plot.x")
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        raise fail("plot.title: must be a string")
    logy = raw.get("logy", True)
    if not isinstance(logy, bool):
        raise fail("plot.logy: must be true or false")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise fail("plot.labels: must be a table of axis value = legend text")
    ratio = raw.get("ratio")
    if ratio is not None:
        first = next((a for a in axes if lines and a.key == lines[0]), None)
        if (
            first is None
            or not isinstance(ratio, list)
            or len(ratio) != 2
            or not all(v in first.values for v in ratio)
        ):
            raise fail("plot.ratio: must be two values of the first plot.lines axis")
        ratio = tuple(ratio)
    return PlotSpec(
        x=x, y=y, lines=tuple(lines), title=title, logy=logy, labels=dict(labels), ratio=ratio
    )


_DEFAULT_STRATEGY = Scenario().remove.strategy


def check_strategies(grid: Grid, policies: Iterable[str]) -> None:
    """Every ``remove.strategy`` of the grid must be known to the installed plugins."""
    known = {"auto", "writeback", *policies}
    for run in grid.runs:
        strategy = run.scenario.get("remove", {}).get("strategy", _DEFAULT_STRATEGY)
        if strategy not in known:
            where = (
                "axes.remove.strategy"
                if "remove.strategy" in run.values
                else "base.remove.strategy"
            )
            raise GridError(
                f"{grid.source}: {where} = {json.dumps(strategy)}: unknown strategy "
                f"(known: {', '.join(sorted(known))})"
            )


# --------------------------------------------------------------------------- rows


#: The report's columns (DESIGN §7 keys, flattened) and how to read them back from CSV.
#: Lists and variable-key dicts are JSON; report keys not listed here land in ``extra``.
REPORT_COLUMNS: dict[str, str] = {
    "scenario": "str",
    "seed": "int",
    "device": "str",
    "mode": "str",
    "policy": "str",
    "blocks": "json",
    "pages_in_region": "int",
    "isolated_free": "int",
    "migrated": "int",
    "rebound": "int",
    "written_back": "int",
    "writeback_ios": "int",
    "writeback_bytes": "int",
    "journal_ios": "int",
    "offlined": "bool",
    "passes": "int",
    "rounds": "int",
    "retries": "json",
    "simulated_seconds": "float",
    "cpu_seconds": "float",
    "io_seconds": "float",
    "failed_pages": "int",
    "failed": "json",
    "check_failures": "int",
    "checks": "json",
    "lock_violations": "json",
    "verify_ok": "bool",
    "verify_files_checked": "int",
    "verify_mismatches": "int",
    "verify": "json",
    "strategies": "json",
    "per_aops": "json",
    "ok": "bool",
    "extra": "json",
}
#: Wall-clock columns: they differ from run to run and are not part of a row's identity.
TIMING_COLUMNS: dict[str, str] = {"wall_seconds": "float", "run_seconds": "float", "worker": "str"}
HEAD_COLUMNS: dict[str, str] = {
    "run_id": "str",
    "run_index": "int",
    "status": "str",
    "reason": "str",
}
STATUSES = ("ok", "failed", "error")


def header(grid: Grid) -> list[str]:
    return [*HEAD_COLUMNS, *grid.axis_keys, *REPORT_COLUMNS, *TIMING_COLUMNS]


def identity(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its wall-clock columns: equal for equal scenarios on any executor."""
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


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
    extra = {k: v for k, v in report.items() if k not in REPORT_COLUMNS and k not in TIMING_COLUMNS}
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
        bad = [name for name, f in verify.get("fsck", {}).items() if not f.get("ok")]
        parts.append(
            "verification failed: "
            + ", ".join(
                ([f"e2fsck not clean on {', '.join(bad)}"] if bad else [])
                + [f"{len(verify.get('mismatches', []))} mismatch(es)"]
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
    from hotremove.runner import run_scenario
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


def _parse(kind: str, text: str) -> Any:
    if text == "" and kind != "str":
        return None
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "true"
    if kind == "json":
        return json.loads(text)
    return text


def parse_row(raw: dict[str, str], grid: Grid) -> dict[str, Any]:
    """A CSV row back to typed values (axis columns from the grid itself, by run id)."""
    kinds = {**HEAD_COLUMNS, **REPORT_COLUMNS, **TIMING_COLUMNS}
    row: dict[str, Any] = {}
    for key, text in raw.items():
        if key in kinds:
            row[key] = _parse(kinds[key], text or "")
    return row


# --------------------------------------------------------------------------- results file


class ResultsFile:
    """A CSV file of rows, appended one whole line per ``write(2)`` and locked against a second
    sweep writing it at the same time."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._fd: int | None = None

    @staticmethod
    def read(path: Path) -> tuple[list[str] | None, list[dict[str, str]]]:
        """Header and rows; a torn last line (no newline) is ignored."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            raise HotremoveError(f"{path}: cannot read results: {exc.strerror}") from None
        text = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
        reader = csv.reader(io.StringIO(text))
        rows = list(reader)
        if not rows:
            return None, []
        head, body = rows[0], rows[1:]
        return head, [dict(zip(head, r, strict=False)) for r in body if len(r) == len(head)]

    def open(self, *, resume: bool, overwrite: bool) -> list[dict[str, str]]:
        """Lock and open for appending; returns the rows already there (``resume``)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise HotremoveError(f"{self.path}: cannot write results: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise HotremoveError(f"{self.path}: another sweep is writing this file") from None
            head, rows = self.read(self.path)
            # a file without rows (a sweep whose cluster never came up) has nothing to keep
            if rows and not (resume or overwrite):
                raise HotremoveError(
                    f"{self.path}: results file exists "
                    "(--resume continues it, --overwrite replaces it)"
                )
            if rows and not overwrite and head != self.columns:
                raise HotremoveError(
                    f"{self.path}: its columns are not this grid's (another grid, or axes "
                    "changed); write to a new file"
                )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if overwrite or not rows:
            os.ftruncate(fd, 0)
            self._write(self.columns)
            return []
        whole = self.path.read_bytes().rfind(b"\n") + 1
        if whole < os.fstat(fd).st_size:  # a line torn by a kill: cut it, the next row starts clean
            os.ftruncate(fd, whole)
        return rows

    def _write(self, cells: list[str]) -> None:
        assert self._fd is not None
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        data = buf.getvalue().encode()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def append(self, row: dict[str, Any]) -> None:
        self._write([_cell(row.get(column)) for column in self.columns])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- executors


class Pool(Protocol):
    """What :func:`execute` needs from an executor: concurrent.futures' shape."""

    description: str

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any: ...

    def as_completed(self, futures: list[Any]) -> Iterator[Any]: ...

    def close(self, *, cancel: bool = False) -> None: ...


def _init_local_worker(log_level: str) -> None:
    # Ctrl-C belongs to the parent, which stops the sweep; a worker finishes its run quietly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prepare_worker(log_level)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalPool:
    """A process pool on this machine (``spawn``: no state shared with the parent)."""

    def __init__(self, workers: int | None = None, log_level: str = "warning") -> None:
        self.workers = workers or default_workers()
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_local_worker,
            initargs=(log_level,),
        )
        self.description = f"local process pool, {self.workers} worker(s)"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        return self.executor.submit(fn, *args)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        return concurrent.futures.as_completed(futures)

    def close(self, *, cancel: bool = False) -> None:
        """``cancel``: drop the queued runs and stop the running ones (their rows would be
        thrown away anyway), so an interrupted sweep exits at once."""
        if not cancel:
            self.executor.shutdown()
            return
        terminate = getattr(self.executor, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()


class DaskPool:
    """A Dask distributed cluster: an existing one (``scheduler`` address) or, without one, a
    ``LocalCluster`` of ``workers`` single-threaded processes started for this sweep."""

    def __init__(
        self, scheduler: str | None = None, workers: int | None = None, *, timeout: float = 10
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise HotremoveError(
                "--executor dask: Dask is not installed (pip install 'hotremove[dask]')"
            ) from None
        self.cluster = None
        if scheduler is None:
            n = workers or default_workers()
            self.cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self.cluster)
            self.description = f"Dask LocalCluster, {n} worker process(es)"
        else:
            try:
                self.client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise HotremoveError(
                    f"--scheduler: cannot connect to the Dask scheduler at {scheduler}: {exc}"
                ) from None
            nworkers = len(self.client.scheduler_info().get("workers", {}))
            self.description = f"Dask cluster at {scheduler}, {nworkers} worker(s)"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        return self.client.submit(fn, *args, key=key, pure=False)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        from distributed import as_completed

        return iter(as_completed(futures))

    def close(self, *, cancel: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def open_pool(
    executor: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    log_level: str = "warning",
) -> Pool:
    if executor == "local":
        if scheduler is not None:
            raise HotremoveError("--scheduler: only with --executor dask")
        return LocalPool(workers, log_level)
    if executor == "dask":
        if scheduler is not None and workers is not None:
            raise HotremoveError("--workers: the cluster at --scheduler has its own workers")
        return DaskPool(scheduler, workers)
    raise HotremoveError(f"--executor: unknown executor {executor!r} (local or dask)")


@dataclass
class Lost:
    run: RunSpec
    reason: str


def execute(
    pool: Pool,
    runs: list[RunSpec],
    name: str,
    on_row: Callable[[RunSpec, dict[str, Any]], None],
    *,
    log_level: str = "warning",
) -> list[Lost]:
    """Submit every run, hand each row to ``on_row`` as it finishes; the one code path of
    every executor. Returns the runs whose worker was lost (they have no row)."""
    token = uuid.uuid4().hex[:8]  # task keys are global on a shared Dask scheduler
    futures = {
        pool.submit(
            run_one, r.run_id, r.scenario, name, log_level, key=f"hotremove-{r.run_id}-{token}"
        ): r
        for r in runs
    }
    lost: list[Lost] = []
    for future in pool.as_completed(list(futures)):
        run = futures[future]
        try:
            row = future.result()
        except Exception as exc:  # the worker, not the run: BrokenProcessPool, KilledWorker
            lost.append(Lost(run, " ".join(f"{type(exc).__name__}: {exc}".split())))
            continue
        on_row(run, row)
    return lost


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


def existing_rows(grid: Grid, output: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Typed rows of ``output`` that are runs of ``grid`` (first row per run), and how many
    rows are not."""
    _, raw = ResultsFile.read(output)
    return _index_rows(grid, raw)


def _index_rows(grid: Grid, raw: list[dict[str, str]]) -> tuple[dict[str, dict[str, Any]], int]:
    ids = {r.run_id for r in grid.runs}
    rows: dict[str, dict[str, Any]] = {}
    stray = 0
    for r in raw:
        run_id = r.get("run_id", "")
        if run_id not in ids:
            stray += 1
        elif run_id not in rows:
            rows[run_id] = parse_row(r, grid)
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
    results = ResultsFile(output, header(grid))
    previous = results.open(resume=resume, overwrite=overwrite)
    try:
        rows, stray = _index_rows(grid, previous)
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


# --------------------------------------------------------------------------- plot

AXIS_LABELS = {
    "workload.dirty": "dirty share of the cached pages",
    "workload.cached": "cached share of the files",
    "workload.seed": "seed",
    "remove.strategy": "strategy",
    "remove.mode": "migrate mode",
    "device.preset": "device",
    "memory.size": "memory size (bytes)",
    "simulated_seconds": "simulated offline time (s)",
    "io_seconds": "simulated I/O time (s)",
    "cpu_seconds": "simulated CPU time (s)",
    "writeback_ios": "write requests issued",
    "written_back": "pages written back",
    "rebound": "pages rebound (no I/O)",
    "migrated": "pages migrated",
    "wall_seconds": "wall-clock offline time (s)",
}


def _label(key: str) -> str:
    if key in AXIS_LABELS:
        return AXIS_LABELS[key]
    match = re.match(r"^filesystem\[(\d+|\*)\]\.(\w+)$", key)
    if match:
        return f"filesystem {match.group(2).replace('_', ' ')}"
    return key


def describe_base(grid: Grid) -> str:
    """The fixed conditions of a grid, for a figure's subtitle."""
    base = copy.deepcopy(grid.base)
    mem = base["memory"]
    removed = len(base["remove"]["blocks"])
    parts = [
        f"{mem['size'] >> 20} MiB memory, {removed} memory block{'s' if removed > 1 else ''} of "
        f"{mem['block_size'] >> 20} MiB removed"
    ]
    for i, fs in enumerate(base["filesystem"]):
        if any(k.startswith((f"filesystem[{i}].", "filesystem[*].")) for k in grid.axis_keys):
            continue
        parts.append(
            f"{fs['type']} {fs['block_size'] // 1024} KiB blocks, {fs['files']} files × "
            f"{fs['file_size'] >> 10} KiB"
        )
    fixed = {"workload.dirty": "dirty", "device.preset": "device", "remove.strategy": "strategy"}
    for key, word in fixed.items():
        if key not in grid.axis_keys:
            section, name = key.split(".")
            parts.append(f"{word} {base[section][name]}")
    return ", ".join(parts)


def plot(
    grid: Grid, rows: dict[str, dict[str, Any]], path: Path, *, title: str | None = None
) -> int:
    """The grid's figure: ``plot.y`` against ``plot.x``, one line per combination of
    ``plot.lines`` (colour for the first axis, line style for the second, marker for the rest),
    mean over the aggregated axes with a min–max band; failed runs are red crosses.
    Returns the number of lines drawn."""
    from matplotlib.figure import Figure

    spec = grid.plot
    axis_values = {a.key: list(a.values) for a in grid.axes}
    fig = Figure(figsize=(8.8, 5.6), layout="constrained")
    ax = fig.add_subplot()
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    lines: dict[tuple[Any, ...], dict[Any, list[dict[str, Any]]]] = {}
    for run in grid.runs:
        key = tuple(run.values[k] for k in spec.lines)
        cell = lines.setdefault(key, {}).setdefault(run.values[spec.x], [])
        if run.run_id in rows:
            cell.append(rows[run.run_id])
    x_numeric = all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in axis_values[spec.x]
    )
    failed_shown = False
    drawn: dict[tuple[Any, ...], tuple[list[Any], list[float], str]] = {}
    for key, cells in lines.items():
        pos = [axis_values[k].index(v) for k, v in zip(spec.lines, key, strict=True)]
        color = colors[pos[0] % len(colors)] if pos else colors[0]
        style = styles[pos[1] % len(styles)] if len(pos) > 1 else "-"
        marker = markers[sum(pos[2:]) % len(markers)] if len(pos) > 2 else "o"
        xs, means, lows, highs = [], [], [], []
        for x_value, cell_rows in cells.items():
            x = x_value if x_numeric else axis_values[spec.x].index(x_value)
            good = [
                r[spec.y] for r in cell_rows if r["status"] == "ok" and r.get(spec.y) is not None
            ]
            good = [v for v in good if v > 0 or not spec.logy]
            for r in cell_rows:
                if (
                    r["status"] != "ok"
                    and r.get(spec.y) is not None
                    and (r[spec.y] > 0 or not spec.logy)
                ):
                    ax.plot(
                        [x],
                        [r[spec.y]],
                        "x",
                        color="red",
                        markersize=9,
                        mew=2,
                        label=None if failed_shown else "run failed (offline or verification)",
                    )
                    failed_shown = True
            if good:
                xs.append(x)
                means.append(statistics.fmean(good))
                lows.append(min(good))
                highs.append(max(good))
        if not xs:
            continue
        label = " · ".join(spec.labels.get(str(v), _show(v)) for v in key) or spec.y
        ax.plot(xs, means, linestyle=style, marker=marker, color=color, label=label, linewidth=2)
        if any(lo != hi for lo, hi in zip(lows, highs, strict=True)):
            ax.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)
        drawn[key] = (xs, means, color)
    if spec.logy:
        ax.set_yscale("log")
    if spec.ratio is not None:
        _mark_ratios(ax, spec, drawn)
    if not x_numeric:
        ax.set_xticks(range(len(axis_values[spec.x])), [_show(v) for v in axis_values[spec.x]])
    ax.set_xlabel(_label(spec.x))
    ax.set_ylabel(_label(spec.y))
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(title=" · ".join(_label(k) for k in spec.lines) or None, fontsize=9, title_fontsize=9)
    default = f"{_label(spec.y).removesuffix(' (s)')} against the {_label(spec.x)}"
    heading = title or spec.title or default[0].upper() + default[1:]
    fig.suptitle("\n".join(_wrap(heading, 80)), fontsize=12, fontweight="bold")
    notes = [describe_base(grid)]
    if grid.aggregated:
        counts = {k: len(axis_values[k]) for k in grid.aggregated}
        notes.append(
            "mean over "
            + ", ".join(f"{n} {_label(k)}s" for k, n in counts.items())
            + " (band: min–max)"
        )
    if spec.ratio is not None:
        top, bottom = (spec.labels.get(str(v), _show(v)) for v in spec.ratio)
        notes.append(f"arrows: {top} ÷ {bottom} at the last {_label(spec.x)}")
    ok = sum(1 for r in rows.values() if r["status"] == "ok")
    notes.append(
        f"{len(rows)} of {len(grid.runs)} runs, {ok} verified ok · hotremove sweep {grid.name}"
    )
    ax.set_title("\n".join(_wrap("; ".join(notes), 110)), fontsize=8.5, color="#444444")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=150)
    except (OSError, ValueError) as exc:
        raise HotremoveError(f"--plot: cannot write {path}: {exc}") from None
    return len(drawn)


def _mark_ratios(
    ax: Any, spec: PlotSpec, drawn: dict[tuple[Any, ...], tuple[list[Any], list[float], str]]
) -> None:
    """At the last x of each pair of lines (``ratio`` = [a, b] of the first lines axis, the
    other line axes equal), an arrow from b up to a labelled with a/b."""
    assert spec.ratio is not None
    top, bottom = spec.ratio
    lo, hi = ax.get_xlim()
    pairs = [(k, (bottom, *k[1:])) for k in drawn if k[0] == top and (bottom, *k[1:]) in drawn]
    for i, (k_top, k_bottom) in enumerate(pairs):
        (xs_t, ys_t, color), (xs_b, ys_b, _) = drawn[k_top], drawn[k_bottom]
        if not xs_t or not xs_b or xs_t[-1] != xs_b[-1] or not ys_b[-1]:
            continue
        x = xs_t[-1] - (i + 1) * 0.035 * (hi - lo)
        y_top, y_bottom = ys_t[-1], ys_b[-1]
        ax.annotate(
            "",
            xy=(x, y_top),
            xytext=(x, y_bottom),
            arrowprops={"arrowstyle": "<->", "color": color, "lw": 1.2, "shrinkA": 0, "shrinkB": 0},
        )
        middle = math.sqrt(y_top * y_bottom) if spec.logy else (y_top + y_bottom) / 2
        factor = y_top / y_bottom
        text = f"×{factor:,.0f}" if factor >= 10 else f"×{factor:.2g}"
        ax.text(
            x - 0.008 * (hi - lo),
            middle,
            text,
            ha="right",
            va="center",
            fontsize=9,
            fontweight="bold",
            color=color,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
        )


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


__all__ = [
    "Axis",
    "DaskPool",
    "Grid",
    "GridError",
    "LocalPool",
    "PlotSpec",
    "RunSpec",
    "SweepResult",
    "check_strategies",
    "execute",
    "existing_rows",
    "flatten_report",
    "header",
    "identity",
    "load_grid",
    "parse_grid",
    "plot",
    "run_one",
    "summarize",
    "sweep",
]
