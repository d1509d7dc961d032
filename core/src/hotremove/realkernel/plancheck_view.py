"""How a plan-check is shown: the per-block table of plan against kernel, and the picture
(``kernel plan-check --plot``) with the plan's call above the kernel's for every DIMM block
and each remedy tried, anything wrong framed in red. Apart from :mod:`plancheck`, which
runs and scores the check."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from hotremove.fileio import save_figure
from hotremove.realkernel.plancheck import PlanCheck


def render_plan_check(check: PlanCheck) -> Table:
    """Per block: the plan's call and the kernel's, with the counts and their agreement."""
    s = check.result
    table = Table(
        title=f"hotremove plan --kernel {check.version} vs Linux "
        f"{check.real.kernel.get('release', check.version)}: every DIMM block, highest first"
    )
    for column in ("memoryN", "plan", "kernel", "migrated plan/real", "written plan/real", "s"):
        table.add_column(column, justify="left" if column in ("plan", "kernel") else "right")
    for row in s["blocks"]:
        if "agree" not in row:
            table.add_row(str(row["block"]), row.get("missing", "?"), "", "", "", "")
            continue
        p, r, a = row["predicted"], row["real"], row["agree"]
        pcall = "go" if p["offlined"] else f"no: {p['reason_class']}"
        if p["journal_held"]:
            pcall += " (jbd2)"
        if p["remedy"]:
            pcall += f"; remedy {p['remedy']}"
        rcall = "offlined" if r["offlined"] else f"-{r['error']} ({r['reason_class']})"
        table.add_row(
            str(row["block"]),
            Text(pcall, style="green" if a["go"] and a["reason"] else "red"),
            rcall,
            Text(f"{p['migrated']}/{r['migrated']}", style="" if a["migrated"] else "red"),
            Text(
                f"{p['written_back']}/{r['written_back']}",
                style="" if a["written_back"] else "red",
            ),
            f"{r['seconds']:.2f}",
        )
    for rem in s["remedies"]:
        table.add_row(
            str(rem["block"]),
            Text(
                f"after {rem['tried']} (plan: {rem['planned']}): "
                + {True: "go", False: "no", None: "depends on timing"}[rem["predicted_offlined"]],
                style={True: "green", False: "red", None: "yellow"}[rem["agree"]],
            ),
            "offlined" if rem["real_offlined"] else f"-{rem['real_error']}",
            str(rem["migrated"]),
            str(rem["written_back"]),
            f"{rem['seconds']:.2f}",
        )
    acc = s["accuracy"]
    table.caption = (
        f"go/no-go right: {s['go_right']}/{s['go_total']}"
        + (f" ({acc:.0%})" if acc is not None else "")
        + f"; reasons {s['reasons_right']}/{s['go_total']}; counts within tolerance "
        f"{s['counts_right']}/{s['go_total']} (migrated {s['tolerances']['migrated']}; "
        f"written {s['tolerances']['written_back']}); remedies {s['remedies_right']}/"
        f"{s['remedies_scored']} (of {len(s['remedies'])} tried); guest "
        f"{check.times.get('guest_wall_seconds')} s, plan {check.times.get('plan_seconds')} s"
    )
    return table


def _call_colour(go: bool, reason_class: str, moved: int) -> tuple[str, str | None]:
    """A cell's colour and hatch, in ``plan --plot``'s palette (realmachine/plot.py)."""
    from hotremove.realmachine.plot import BLOCKED_COLOURS, BLOCKED_HATCH, FREE_COLOUR

    if go:
        return (FREE_COLOUR if not moved else "#a6d96a"), None
    colour = {
        "unmovable": BLOCKED_COLOURS["unmovable"],
        "enomem": BLOCKED_COLOURS["enomem"],
        "invalid": BLOCKED_COLOURS["zones"],
        "state": BLOCKED_COLOURS["state"],
    }.get(reason_class, BLOCKED_COLOURS["failures"])
    return colour, BLOCKED_HATCH


def plot_plan_check(check: PlanCheck, path: Path | str, *, force: bool = True) -> Path:
    """``plan --plot`` for a plan-check: one column per DIMM block (in memoryN order), the
    plan's call above the kernel's, and for each remedy the guest applied a pair of rows
    (the plan's prediction after it, what the offline did). Cells are coloured as
    ``plan --plot`` colours blocks (light green: goes, pages to move; dark green: goes,
    nothing to move; hatched: cannot go, by reason); a red frame marks a call or a count
    outside the tolerance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from hotremove.realmachine.plot import _ink

    path = Path(path)
    s = check.result
    rows_by_block = {r["block"]: r for r in s["blocks"] if "agree" in r}
    blocks = sorted(rows_by_block)
    fs_of = {int(b["block"]): b.get("fs") for b in check.plan.get("blocks", [])}
    label_of = {int(b["block"]): b.get("fs_label") for b in check.plan.get("blocks", [])}
    classes = {int(b["block"]): b.get("classes", {}) for b in check.plan.get("blocks", [])}
    actions = list(dict.fromkeys(rem["tried"] for rem in s["remedies"]))
    lines = ["plan", "kernel"] + [x for a in actions for x in (f"plan after {a}", a)]
    cw, ch = 2.05, 0.95
    fig = Figure(
        figsize=(1.7 + cw * len(blocks), 1.5 + ch * len(lines) + 0.5), dpi=110, layout="constrained"
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def cell(col: int, line: int, colour: str, hatch: str | None, text: str, ok: bool) -> None:
        y = -line * ch
        ax.add_patch(
            Rectangle(
                (col * cw, y),
                cw * 0.95,
                ch * 0.9,
                facecolor=colour,
                hatch=hatch,
                edgecolor="#777777" if ok else "#d7191c",
                linewidth=0.6 if ok else 2.4,
            )
        )
        ax.text(
            col * cw + cw * 0.475,
            y + ch * 0.45,
            text,
            ha="center",
            va="center",
            fontsize=6.5,
            color=_ink(colour) if hatch is None else "#000000",
            bbox=None if hatch is None else {"facecolor": "white", "alpha": 0.8, "lw": 0},
        )

    for col, block in enumerate(blocks):
        r = rows_by_block[block]
        p, real, a = r["predicted"], r["real"], r["agree"]
        colour, hatch = _call_colour(p["offlined"], p["reason_class"], p["migrated"])
        call = "go" if p["offlined"] else f"no: {p['reason_class']}"
        if p["journal_held"]:
            call += " (jbd2)"
        if p["remedy"] and not p["offlined"]:
            call += f"\nremedy: {p['remedy']}"
        cell(
            col,
            0,
            colour,
            hatch,
            f"{call}\n{p['migrated']:,} moved · {p['written_back']:,} written",
            a["go"] and a["reason"],
        )
        colour, hatch = _call_colour(real["offlined"], real["reason_class"], real["migrated"])
        call = "offlined" if real["offlined"] else f"-{real['error']}"
        extra = f" (+{real['arrived']:,} moved in)" if real.get("arrived") else ""
        cell(
            col,
            1,
            colour,
            hatch,
            f"{call} in {real['seconds']:.2f} s\n{real['migrated']:,} moved{extra}\n"
            f"{real['written_back']:,} written",
            a["go"] and a["reason"] and a["migrated"] and a["written_back"],
        )
        c = classes.get(block, {})
        dirty = c.get("file_dirty", 0) + c.get("file_dirty_bh", 0)
        cached = sum(n for k, n in c.items() if k.startswith("file"))
        owner = f"{fs_of.get(block)}: {label_of.get(block)}" if cached else "no page cache"
        ax.text(
            col * cw + cw * 0.475,
            ch * 1.35,
            f"memory{block}\n{owner}\n{cached:,} cached, {dirty:,} dirty",
            ha="center",
            va="center",
            fontsize=7,
        )
        for k, action in enumerate(actions):
            rem = next(
                (x for x in s["remedies"] if x["block"] == block and x["tried"] == action), None
            )
            if rem is None:
                continue
            pred = rem["predicted_offlined"]
            line = 2 + 2 * k
            if pred is None:
                cell(col, line, "#fee08b", None, "depends on timing\n(not scored)", True)
            else:
                colour, hatch = _call_colour(pred, "migration", 1)
                cell(col, line, colour, hatch, f"{'go' if pred else 'no'}", rem["agree"] is True)
            colour, hatch = _call_colour(rem["real_offlined"], "migration", rem["migrated"])
            cell(
                col,
                line + 1,
                colour,
                hatch,
                ("offlined" if rem["real_offlined"] else f"-{rem['real_error']}")
                + f" in {rem['seconds']:.2f} s\n{rem['migrated']:,} moved",
                rem["agree"] is not False,
            )
    for line, name in enumerate(lines):
        ax.text(-0.1, -line * ch + ch * 0.45, name, ha="right", va="center", fontsize=8)
    ax.set_xlim(-1.4, cw * len(blocks))
    ax.set_ylim(-(len(lines) - 1) * ch - 0.1, ch * 1.7)
    ax.set_aspect("equal")
    ax.axis("off")
    release = check.real.kernel.get("release", check.version)
    fig.suptitle(
        f"hotremove plan --kernel {check.version} on the guest's snapshot vs Linux {release}"
        f" (QEMU {check.real.accel})\ngo/no-go right {s['go_right']}/{s['go_total']}, reasons "
        f"{s['reasons_right']}/{s['go_total']}, counts within tolerance {s['counts_right']}/"
        + (
            f"{s['go_total']}, remedies {s['remedies_right']}/{s['remedies_scored']} scored "
            f"(of {len(s['remedies'])} tried)"
            if s["remedies"]
            else f"{s['go_total']}, no remedy tried (no block stayed online)"
        )
        + "  ·  red frame: wrong or outside tolerance",
        fontsize=8.5,
        x=0.01,
        ha="left",
    )
    return save_figure(
        fig, path, force=force, formats=("png", "svg"), bbox_inches="tight", pad_inches=0.15
    )
