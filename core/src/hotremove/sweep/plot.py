"""The figure for a grid's two main axes."""

from __future__ import annotations

import copy
import math
import re
import statistics
from pathlib import Path
from typing import Any

import structlog

from hotremove.fileio import save_figure
from hotremove.sweep.grid import Grid, PlotSpec, _show

log = structlog.get_logger("hotremove.sweep")

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
    grid: Grid,
    rows: dict[str, dict[str, Any]],
    path: Path,
    *,
    title: str | None = None,
    force: bool = True,
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
    save_figure(fig, path, force=force, dpi=150)
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
