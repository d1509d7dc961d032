"""Grid files: parsing, axes, expansion into runs with stable ids."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from hotremove.errors import ScenarioError
from hotremove.fileio import FileRefused, read_text
from hotremove.scenario import FilesystemConfig, Scenario, validate
from hotremove.sweep.columns import REPORT_COLUMNS
from hotremove.tomltext import TomlError, parse_toml

log = structlog.get_logger("hotremove.sweep")

MAX_RUNS = 100_000
MAX_AXIS_VALUES = 10_000
#: Seeds are repetitions, not conditions: by default the summary and the plot average over them.
REPEAT_AXES = ("workload.seed",)


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
        text = read_text(path, what="grid file")
    except FileRefused as exc:
        raise GridError(str(exc)) from None
    try:
        data = parse_toml(text)
    except TomlError as exc:
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
    _no_axis_twice(axes, base, fail)
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


def _no_axis_twice(
    axes: list[Axis], base: dict[str, Any], fail: Callable[[str], GridError]
) -> None:
    """One key, one axis: ``"workload.dirty"`` and ``[axes.workload] dirty`` are the same
    key (TOML keeps both), and ``filesystem[*].size`` overlaps ``filesystem[0].size``; either
    would leave one of the two value lists silently unused."""
    owner: dict[str, str] = {}
    for axis in axes:
        match = _KEY_RE.match(axis.key)
        assert match is not None
        section, index, name = match.group("section", "index", "field")
        if index == "*":
            cells = [f"{section}[{i}].{name}" for i in range(len(base.get(section, [])))]
        else:
            cells = [axis.key]
        for cell in cells:
            if cell in owner:
                raise fail(
                    f"axes.{axis.key}: sets the same key as axes.{owner[cell]} (give each key once)"
                )
            owner[cell] = axis.key


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
    if key == "kernel.version" and not all(isinstance(v, str) for v in values):
        # TOML reads 6.10 as the number 6.1: a version must be spelt as a string
        raise fail(f'{where}: write kernel versions as strings, e.g. ["6.1", "6.12"]')
    seen: list[Any] = []
    for value in values:
        if any(value == s and type(value) is type(s) for s in seen):
            raise fail(f"{where}: value {_short(value)} appears twice")
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
        if not all(isinstance(n, int) or math.isfinite(n) for n in numbers):
            raise fail("range: start, stop and step must be finite numbers (no nan or inf)")
        if step <= 0 or stop < start:
            raise fail("range needs start <= stop and a positive step")
        if all(isinstance(n, int) for n in numbers):  # exact: no float of a huge integer
            count = (stop - start) // step + 1
        else:
            try:
                count = math.floor((stop - start) / step + 1e-9) + 1
            except OverflowError:
                count = MAX_AXIS_VALUES + 1
        if count > MAX_AXIS_VALUES:
            raise fail(f"range has more than the {MAX_AXIS_VALUES} values an axis may have")
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
            return f"axes.{key} = {_short(value)}: {rest}"
    assignments = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
    return f"run {index} ({assignments}): {message}"


_INDEX_RE = re.compile(r"\[(\d+|\*)\]")


def _short(value: Any, width: int = 40) -> str:
    """A value as JSON, cut to ``width`` characters (a hostile value can be huge)."""
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


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
