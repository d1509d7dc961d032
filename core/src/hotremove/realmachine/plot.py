"""The plan's picture: one cell per memory block, coloured by predicted cost or blocker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hotremove.fileio import save_figure
from hotremove.realmachine.plan import Plan

#: Largest buddy block (MAX_PAGE_ORDER 10 on x86_64): 4 MiB.
# -- the picture ---------------------------------------------------------------------------------
#: Colours of blocked blocks, by main blocker (class names, and block-level reasons).
BLOCKED_COLOURS = {
    "reserved": "#3b3b3b",
    "slab": "#8c510a",
    "pgtable": "#bf812d",
    "unmovable": "#762a83",
    "flagless": "#878787",
    "hwpoison": "#e7298a",
    "offline": "#c2a5cf",
    "hole": "#000000",
    "zones": "#35978f",
    "state": "#ffffff",
    "enomem": "#4575b4",
    "failures": "#67001f",
}
_BLOCKED_LABELS = {
    "reserved": "blocked: reserved pages",
    "slab": "blocked: slab",
    "pgtable": "blocked: page tables",
    "unmovable": "blocked: other kernel memory",
    "flagless": "blocked: flagless pages (--flagless unmovable)",
    "hwpoison": "blocked: hwpoison",
    "offline": "blocked: PageOffline",
    "hole": "blocked: memory hole",
    "zones": "blocked: mixed zones (valid_zones none)",
    "state": "block already offline",
    "enomem": "blocked: no room elsewhere (-ENOMEM)",
    "failures": "blocked: pages fail to migrate",
}
_SHORT = {"unmovable": "kernel", "hwpoison": "poison", "offline": "balloon", "state": "offline"}
FREE_COLOUR = "#1a9850"
ABSENT_COLOUR = "#f0f0f0"
BLOCKED_HATCH = "////"


def plot(p: Plan, path: Path | str, *, columns: int = 16, force: bool = True) -> Path:
    """One cell per memory block (by ``memoryN`` number, holes left pale): offlinable blocks
    coloured by predicted simulated time, blocked ones (hatched) by their main blocker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    path = Path(path)
    by_index = {b.index: b for b in p.blocks}
    last = max(by_index) if by_index else 0
    columns = max(1, min(columns, -(-(last + 1) // 2)))
    rows = last // columns + 1
    costs = [b.simulated_seconds for b in p.blocks if b.offlinable and b.moved_pages]
    lo = min(costs) if costs else 1e-6
    hi = max(costs) if costs else 1e-3
    norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)
    cmap = _cost_cmap()
    categories = {b.category for b in p.blocks} | ({"absent"} if len(by_index) <= last else set())
    cell = 0.62  # inches
    legend_rows = 1 + len(categories & set(BLOCKED_COLOURS)) + ("absent" in categories)
    height = max(rows * cell + 1.6, legend_rows * 0.22 + 1.4)
    fig = Figure(figsize=(columns * cell + 4.2, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for index in range(last + 1):
        x, y = index % columns, index // columns
        b = by_index.get(index)
        hatch = None
        if b is None:
            colour, text, ink = ABSENT_COLOUR, "", "#999999"
        else:
            cat = b.category
            if cat == "cost":
                colour = cmap(norm(max(b.simulated_seconds, lo)))
                text = _short_seconds(b.simulated_seconds)
            elif cat == "free":
                colour, text = FREE_COLOUR, "free"
            else:
                colour, text, hatch = BLOCKED_COLOURS[cat], _SHORT.get(cat, cat), BLOCKED_HATCH
            ink = _ink(colour)
        ax.add_patch(
            Rectangle(
                (x, -y),
                0.94,
                0.9,
                facecolor=colour,
                edgecolor="#777777",
                linewidth=0.5,
                hatch=hatch,
            )
        )
        ax.text(
            x + 0.47,
            -y + 0.6,
            str(index),
            ha="center",
            va="center",
            fontsize=7,
            color=ink,
            fontweight="bold",
        )
        if text:
            ax.text(x + 0.47, -y + 0.27, text, ha="center", va="center", fontsize=5.5, color=ink)
    ax.set_xlim(-0.1, columns)
    ax.set_ylim(-rows + 0.9, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [Patch(facecolor=FREE_COLOUR, label="offlinable, nothing to move")]
    handles += [
        Patch(
            facecolor=BLOCKED_COLOURS[k],
            edgecolor="#777777",
            hatch=BLOCKED_HATCH,
            label=_BLOCKED_LABELS[k],
        )
        for k in BLOCKED_COLOURS
        if k in categories
    ]
    if "absent" in categories:
        handles.append(Patch(facecolor=ABSENT_COLOUR, edgecolor="#777777", label="no block"))
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False
    )
    if costs:
        bar = fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap),
            ax=ax,
            location="bottom",
            shrink=0.5,
            aspect=40,
            pad=0.02,
        )
        bar.set_label(f"offlinable: predicted time to offline (simulated, {p.device})", fontsize=8)
        bar.ax.tick_params(which="both", labelsize=7)
        bar.ax.xaxis.set_major_formatter(_seconds_formatter())
        bar.ax.xaxis.set_minor_formatter(_seconds_formatter(minor=True))
    snap = p.snapshot
    nok = sum(b.offlinable for b in p.blocks)
    fig.suptitle(
        f"{nok} of {len(p.blocks)} memory blocks ({snap.block_size >> 20} MiB) can be offlined"
        f"  ·  page cache {p.fs.label}: {p.strategy} ({p.plugin})\n"
        f"{snap.source} snapshot, kernel {snap.kernel or '?'}, {snap.taken or '?'}"
        f"  ·  flagless pages counted {p.flagless}",
        fontsize=9,
        x=0.01,
        ha="left",
    )
    return save_figure(fig, path, force=force, bbox_inches="tight", pad_inches=0.15)


def _seconds_formatter(minor: bool = False) -> Any:
    """Tick labels in µs/ms/s; minor ticks labelled only at 2× and 5× (log axis)."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _pos: int | None) -> str:
        if minor and f"{value:.0e}"[0] not in "25":
            return ""
        return _short_seconds(value)

    return FuncFormatter(label)


def _cost_cmap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "hotremove_cost", ["#a6d96a", "#ffffbf", "#fdae61", "#d7191c"]
    )


def _ink(colour: Any) -> str:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#ffffff"


def _short_seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.1f}s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f}ms"
    return f"{value * 1e6:.0f}µs"
