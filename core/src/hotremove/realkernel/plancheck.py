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
    the snapshot's /proc/mounts plus the scenario's own options (a filesystem need not list
    an option that is the superblock's default — ext4 does not, and the ext types make
    ``data=journal`` images that way — so /proc/mounts alone might miss it), block size from
    the scenario."""
    from hotremove.realmachine.plan import default_fs
    from hotremove.realmachine.synthesize import FsSpec, type_options

    fs = scenario.filesystem[index]
    mount = next((m for m in snap.mounts if m.mountpoint == f"/mnt/{fs.name}"), None)
    if mount is None:
        return default_fs(snap)
    known = type_options(mount.fstype)
    given = [o for o in fs.options if o in known]
    keys = {o.split("=")[0] for o in given}
    shown = [o for o in mount.options if o in known and o.split("=")[0] not in keys]
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
