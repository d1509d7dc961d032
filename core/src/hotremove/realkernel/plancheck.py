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
  guest's own pages in the block just before its offline, and within 1 % or 8 pages;
* for every block the guest tried again: the plan's remedy (``fsfreeze``, ``sync`` or
  ``nothing``, with the outcome predicted after it — and whether ``sync`` alone would do)
  against that attempt.

The accuracy is the share of blocks whose go / no-go call was right.
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
WRITTEN_TOLERANCE = "within 1 % or 8 pages"
_migrated_ok = _within(0.02, slack_key="other")
_written_ok = _within(0.01, floor=8)

Progress = Callable[[str], None]


def real_class(error: str | None) -> str:
    return ERROR_CLASS.get(error, "other")


def _other_pages(classes: dict[str, int]) -> int:
    """Used pages of a block that are not page cache (the guest's shell, kernel data)."""
    return max(0, int(classes.get("used", 0)) - int(classes.get("file", 0)))


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
        prior = res.get("prior") or res.get("before") or {}
        ctx = {"other": _other_pages(prior)}
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
                },
                "agree": {
                    "go": p_go == r_go,
                    "reason": p_cls == r_cls,
                    "migrated": _migrated_ok(pred["migrated"], res["migrated"], ctx),
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
        "tolerances": {"migrated": MIGRATED_TOLERANCE, "written_back": WRITTEN_TOLERANCE},
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


def plan_fs(scenario: Any, snap: Any) -> Any:
    """The scenario's first filesystem as the guest mounted it: type and options from the
    snapshot's /proc/mounts plus the scenario's own options (ext4 does not list an option
    that is the superblock's default — the builder sets ``data=journal`` there with
    ``tune2fs -o journal_data`` — so /proc/mounts alone would say data=ordered), block size
    from the scenario."""
    from hotremove.realmachine.plan import default_fs
    from hotremove.realmachine.synthesize import FS_OPTIONS, FsSpec

    fs = scenario.filesystem[0]
    mount = next((m for m in snap.mounts if m.mountpoint == f"/mnt/{fs.name}"), None)
    if mount is None:
        return default_fs(snap)
    given = [o for o in fs.options if o in FS_OPTIONS]
    keys = {o.split("=")[0] for o in given}
    shown = [o for o in mount.options if o in FS_OPTIONS and o.split("=")[0] not in keys]
    return FsSpec(mount.fstype, tuple(given + shown), block_size=int(fs.block_size))


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
) -> PlanCheck:
    """Boot, snapshot, offline every DIMM block, plan on the snapshot, score (module doc)."""
    import time

    from hotremove.kernels import get_kernel
    from hotremove.plugins import load_plugins
    from hotremove.realkernel.run import X86_BLOCK_SIZE, run_in_guest
    from hotremove.realmachine.plan import plan
    from hotremove.realmachine.remedy import advise
    from hotremove.realmachine.snapshot import from_dump, load

    say = progress or (lambda _msg: None)
    dimm = scenario.memory.size // X86_BLOCK_SIZE
    order = tuple(reversed(range(dimm)))
    dump = workdir / "dump"
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
    )
    t1 = time.monotonic()
    say("assembling the snapshot and planning")
    path = from_dump(dump).save(workdir / "snapshot.npz")
    snap = load(path)
    hooks = load_plugins().hooks
    p = advise(plan(snap, hooks, fs=plan_fs(scenario, snap), kernel=get_kernel(version)), hooks)
    plan_dict = p.as_dict()
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
