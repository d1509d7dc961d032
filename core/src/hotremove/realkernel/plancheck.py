"""``hotremove plan``, checked on a real kernel: predict every block from a snapshot taken in
the guest, then offline them and score the prediction.

One boot. The guest replays the scenario's workload, then copies the files ``hotremove
snapshot`` reads (/proc/kpageflags and /proc/kpagecount per memory block, the memory blocks'
sysfs files, /proc/mounts, /proc/meminfo) just before the first offline, offlines every block
of the DIMM (ZONE_MOVABLE) one at a time — highest first, so pages a block gives up land in
the blocks still to come as little as possible — and, when some did not go, applies the
remedies in turn, offlining the blocks still online after each: ``sync``, then ``fsfreeze``
(freeze and thaw every filesystem: a sync plus a journal flush). On the host the dump
becomes a snapshot by the code of ``hotremove snapshot``
(:func:`hotremove.realmachine.snapshot.from_dump`; saved in the same file format),
:func:`hotremove.realmachine.plan.plan` predicts each block by the rules of the booted
kernel's version (:func:`hotremove.realmachine.remedy.advise` adds the remedies), and
:func:`score` compares, block by block:

* **go / no-go** (exact) and, for a block that cannot go, the **reason class**: the kernel's
  error — -EBUSY at isolation is ``unmovable``, -EINTR after pages would not move is
  ``migration``, -ENOMEM ``enomem``, -EINVAL ``invalid`` (:attr:`BlockPlan.reason_class`);
* **migrated** and **written** pages with ``kernel diff``'s tolerances: within 2 % plus the
  guest's own pages in the block just before its offline, and within 1 % or 8 pages; the
  page-cache pages that moved into a block from blocks offlined before it (the guest's scans
  count them: ``arrived``) are added to the plan's migrated count;
* for every block the guest tried again: the plan's remedy (``fsfreeze``, ``sync`` or
  ``nothing``, with the outcome predicted after it — and whether ``sync`` alone would do)
  against that attempt.

The accuracy is the share of blocks whose go / no-go call was right.

A scenario with several filesystems is *staged*: the guest puts each filesystem's page cache in
its own DIMM block (filesystem i → the DIMM's i-th block; its scans after each stage show where
the pages went), and each block is planned with its own filesystem (:func:`plan_blocks`) —
kpageflags cannot name a page's filesystem, the staging can. ``examples/realkernel/
four-states.toml`` is the example: data=journal, dirty ext2, clean ext2 and an empty block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from hotremove.realkernel.diff import _within
from hotremove.realkernel.report import GuestReport

#: The kernel's error for a block's offline → the plan's reason class.
ERROR_CLASS = {
    None: "ok",
    "EBUSY": "unmovable",
    "EINTR": "migration",
    "ENOMEM": "enomem",
    "EINVAL": "invalid",
}

MIGRATED_TOLERANCE = "within 2 % + the guest's own pages in the block before its offline"
ARRIVED_NOTE = "the plan's migrated plus the page cache moved in from blocks offlined before"
WRITTEN_TOLERANCE = "within 1 % or 8 pages"
_migrated_ok = _within(0.02, slack_key="other")
_written_ok = _within(0.01, floor=8)

Progress = Callable[[str], None]


def real_class(error: str | None) -> str:
    return ERROR_CLASS.get(error, "other")


def _other_pages(classes: dict[str, int]) -> int:
    """Used pages of a block that are not page cache (the guest's shell, kernel data)."""
    return max(0, int(classes.get("used", 0)) - int(classes.get("file", 0)))


def _arrived(before: dict[str, int], prior: dict[str, int]) -> int:
    """Page-cache pages that moved into a block after the snapshot, from the blocks offlined
    before it (offline_pages migrates to any online block of the zone): its own offline
    moves them too, and the snapshot cannot know them. The guest's scans count them."""
    return max(0, int(prior.get("file", 0)) - int(before.get("file", 0)))


def score(predicted: list[dict[str, Any]], real: dict[str, Any]) -> dict[str, Any]:
    """Pure: the plan's blocks (:meth:`BlockPlan.as_dict`) against the guest's report
    (:meth:`GuestReport.as_dict`), one row per block the guest offlined (matched by
    ``memoryN``), the go / no-go accuracy, and one row per remedy the guest applied."""
    by_index = {int(b["block"]): b for b in predicted}
    rows = []
    for res in real.get("per_block", []):
        memory = int(res["memory_block"])
        plan_block = by_index.get(memory)
        if plan_block is None:
            rows.append({"block": memory, "sim": res["block"], "missing": "not in the snapshot"})
            continue
        pred = plan_block["predicted"]
        before = res.get("before") or {}
        prior = res.get("prior") or before
        ctx = {"other": _other_pages(prior)}
        arrived = _arrived(before, prior)
        p_go, r_go = bool(plan_block["offlinable"]), bool(res["offlined"])
        p_cls, r_cls = plan_block["reason_class"], real_class(res.get("error"))
        rows.append(
            {
                "block": memory,
                "sim": res["block"],
                "predicted": {
                    "offlined": p_go,
                    "reason_class": p_cls,
                    "journal_held": plan_block.get("journal_held", False),
                    "reasons": plan_block["reasons"],
                    "migrated": pred["migrated"],
                    "written_back": pred["written_back"],
                    "remedy": (plan_block.get("remedy") or {}).get("action"),
                },
                "real": {
                    "offlined": r_go,
                    "error": res.get("error"),
                    "reason_class": r_cls,
                    "migrated": res["migrated"],
                    "written_back": res["written_back"],
                    "failed_attempts": res.get("failed", 0),
                    "seconds": res["seconds"],
                    "other_pages": ctx["other"],
                    "arrived": arrived,
                },
                "agree": {
                    "go": p_go == r_go,
                    "reason": p_cls == r_cls,
                    "migrated": _migrated_ok(pred["migrated"] + arrived, res["migrated"], ctx),
                    "written_back": _written_ok(pred["written_back"], res["written_back"], ctx),
                },
            }
        )
    scored = [r for r in rows if "agree" in r]
    right = sum(r["agree"]["go"] for r in scored)
    remedies = []
    for res in real.get("remedies", []):
        memory = int(res["memory_block"])
        plan_block = by_index.get(memory) or {}
        remedy = plan_block.get("remedy") or {}
        action, tried = remedy.get("action"), res.get("action") or "sync"
        if not remedy:  # predicted to go, so no remedy planned: it still goes
            p_after = bool(plan_block.get("offlinable", False))
        elif tried == action or action == "nothing":
            p_after = bool(remedy.get("offlinable"))
        else:  # the guest's sync where the plan says fsfreeze: None is "depends on timing"
            p_after = remedy.get("sync_alone")
        remedies.append(
            {
                "block": memory,
                "tried": tried,
                "planned": action or "none (predicted to go)",
                "predicted_offlined": p_after,
                "real_offlined": bool(res["offlined"]),
                "real_error": res.get("error"),
                "seconds": res["seconds"],
                "migrated": res["migrated"],
                "written_back": res["written_back"],
                "agree": None if p_after is None else p_after == bool(res["offlined"]),
            }
        )
    return {
        "blocks": rows,
        "go_right": right,
        "go_total": len(scored),
        "accuracy": round(right / len(scored), 4) if scored else None,
        "reasons_right": sum(r["agree"]["reason"] for r in scored),
        "counts_right": sum(r["agree"]["migrated"] and r["agree"]["written_back"] for r in scored),
        "remedies": remedies,
        "remedies_right": sum(r["agree"] is True for r in remedies),
        "remedies_scored": sum(r["agree"] is not None for r in remedies),
        "tolerances": {
            "migrated": MIGRATED_TOLERANCE,
            "written_back": WRITTEN_TOLERANCE,
            "arrived": ARRIVED_NOTE,
        },
    }


@dataclass
class PlanCheck:
    """One plan-check: the plan made in the guest's snapshot and what the kernel did."""

    scenario: str
    version: str
    snapshot_path: str
    plan: dict[str, Any]
    real: GuestReport
    result: dict[str, Any]
    times: dict[str, float] = field(default_factory=dict)

    @property
    def all_right(self) -> bool:
        r = self.result
        return bool(r["go_total"]) and r["go_right"] == r["go_total"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "kernel": self.real.kernel,
            "snapshot": self.snapshot_path,
            "accuracy": self.result["accuracy"],
            "all_right": self.all_right,
            "score": self.result,
            "plan": self.plan,
            "real": self.real.as_dict(),
            "times": self.times,
        }


def plan_fs(scenario: Any, snap: Any, index: int = 0) -> Any:
    """The scenario's ``index``-th filesystem as the guest mounted it: type and options from
    the snapshot's /proc/mounts plus the scenario's own options (ext4 does not list an option
    that is the superblock's default — the builder sets ``data=journal`` there with
    ``tune2fs -o journal_data`` — so /proc/mounts alone would say data=ordered), block size
    from the scenario."""
    from hotremove.realmachine.plan import default_fs
    from hotremove.realmachine.synthesize import FS_OPTIONS, FsSpec

    fs = scenario.filesystem[index]
    mount = next((m for m in snap.mounts if m.mountpoint == f"/mnt/{fs.name}"), None)
    if mount is None:
        return default_fs(snap)
    given = [o for o in fs.options if o in FS_OPTIONS]
    keys = {o.split("=")[0] for o in given}
    shown = [o for o in mount.options if o in FS_OPTIONS and o.split("=")[0] not in keys]
    return FsSpec(mount.fstype, tuple(given + shown), block_size=int(fs.block_size))


def owners(stages: list[dict[str, Any]], names: list[str]) -> dict[int, int]:
    """memoryN → the index of the filesystem whose page cache a staged guest put there."""
    return {int(st["block"]): names.index(st["fs"]) for st in stages if st["fs"] in names}


def plan_blocks(scenario: Any, snap: Any, version: str, owner: dict[int, int]) -> dict[str, Any]:
    """``plan --kernel VERSION`` on ``snap`` (with ``advise``'s remedies), each block with the
    filesystem whose page cache it holds: kpageflags cannot name a page's filesystem
    (:mod:`hotremove.realmachine.plan`, "Page-cache owner"), the staged guest can. One plan
    per filesystem (a block without an owner gets the first); each block's row is taken from
    its owner's plan and says which filesystem it was planned with (``fs``)."""
    from hotremove.kernels import get_kernel
    from hotremove.plugins import load_plugins
    from hotremove.realmachine.plan import plan
    from hotremove.realmachine.remedy import advise

    hooks = load_plugins().hooks
    kernel = get_kernel(version)
    plans = {
        i: advise(plan(snap, hooks, fs=plan_fs(scenario, snap, i), kernel=kernel), hooks)
        for i in sorted({0, *owner.values()})
    }
    out = plans[0].as_dict()
    blocks = []
    for row in out["blocks"]:
        i = owner.get(int(row["block"]), 0)
        own = (
            row
            if i == 0
            else next(b for b in plans[i].as_dict()["blocks"] if b["block"] == row["block"])
        )
        fs = scenario.filesystem[i]
        blocks.append({**own, "fs": fs.name, "fs_label": plans[i].fs.label})
    out["blocks"] = blocks
    out["offlinable"] = sum(b["offlinable"] for b in blocks)
    out["block_fs"] = {str(b): scenario.filesystem[i].name for b, i in sorted(owner.items())}
    return out


def plan_check(
    scenario: Any,
    version: str,
    *,
    workdir: Path,
    name: str = "scenario",
    timeout: float | None = None,
    offline_seconds: int | None = None,
    progress: Progress | None = None,
    remedies: tuple[str, ...] = ("sync", "fsfreeze"),
    staged: bool | None = None,
    synced: tuple[str, ...] = (),
) -> PlanCheck:
    """Boot, snapshot, offline every DIMM block, plan on the snapshot, score (module doc).
    ``staged`` (default: when the scenario has more than one filesystem): each filesystem's
    page cache in its own DIMM block, and each block planned with its filesystem;
    ``synced``: filesystems written back after their writes (clean page cache)."""
    import time

    from hotremove.realkernel.run import X86_BLOCK_SIZE, run_in_guest
    from hotremove.realmachine.snapshot import from_dump, load

    say = progress or (lambda _msg: None)
    dimm = scenario.memory.size // X86_BLOCK_SIZE
    order = tuple(reversed(range(dimm)))
    dump = workdir / "dump"
    if staged is None:
        staged = len(scenario.filesystem) > 1
    t0 = time.monotonic()
    real = run_in_guest(
        scenario,
        version,
        workdir=workdir,
        timeout=timeout,
        name=name,
        offline_seconds=offline_seconds,
        progress=say,
        remove_blocks=order,
        dump_dir=dump,
        remedies=remedies,
        staged=staged,
        synced=synced,
    )
    t1 = time.monotonic()
    say("assembling the snapshot and planning")
    path = from_dump(dump).save(workdir / "snapshot.npz")
    snap = load(path)
    names = [fs.name for fs in scenario.filesystem]
    plan_dict = plan_blocks(scenario, snap, version, owners(real.stages, names))
    result = score(plan_dict["blocks"], real.as_dict())
    t2 = time.monotonic()
    return PlanCheck(
        scenario=name,
        version=version,
        snapshot_path=str(path),
        plan=plan_dict,
        real=real,
        result=result,
        times={
            "guest_wall_seconds": round(t1 - t0, 1),
            "plan_seconds": round(t2 - t1, 2),
            "offline_seconds": real.times.get("offline_seconds", 0.0),
        },
    )


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


def plot_plan_check(check: PlanCheck, path: Path | str) -> Path:
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
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    return path
