"""What the real kernel did, from the guest's console records: :class:`GuestReport`.

Field names follow the simulator's report (:meth:`hotremove.sim.report.Report.as_dict`) where the
quantity can be measured in a guest, so :mod:`hotremove.realkernel.diff` can put them side by
side: ``pages_in_region`` (pages in use in the removed blocks, from /proc/kpageflags),
``migrated`` (``pgmigrate_success`` over the offline), ``written_back`` (``nr_written`` over
the offline: pages the offline's migration wrote out instead of moving), ``failed``
(``pgmigrate_fail``, attempts, not pages: the kernel retries a page on every pass),
``offlined``, ``held`` (page-cache pages left in the blocks that did not go) and ``verify``.
What cannot be measured is named in ``not_comparable``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hotremove.realkernel.console import Record, every, first

#: The shell's message for a failed write to ``state`` → the kernel's error name.
_ERRNO_TEXT = {
    "Device_or_resource_busy": "EBUSY",
    "Interrupted_system_call": "EINTR",
    "Invalid_argument": "EINVAL",
    "Cannot_allocate_memory": "ENOMEM",
    "Operation_not_permitted": "EPERM",
}


def offline_error(rc: int, err: str, state: str) -> str | None:
    """The kernel's answer to ``echo offline > state``: None when it offlined. A writer
    killed by the timeout's signal prints nothing; the write was interrupted: -EINTR."""
    if state == "offline" and rc == 0:
        return None
    for text, name in _ERRNO_TEXT.items():
        if text in err:
            return name
    if rc >= 128:
        return "EINTR"
    return f"rc={rc}" if rc else "still online"


@dataclass
class BlockResult:
    """One memory block's offline, as the guest saw it."""

    sim_block: int  #: the scenario's block index (i-th block of the DIMM)
    memory_block: int  #: the guest's memoryN
    offlined: bool
    error: str | None
    seconds: float
    migrated: int
    failed: int
    written_back: int
    pgpgout_kib: int
    before: dict[str, int]  #: the block's kpageflags classes before the first offline
    #: its classes right after its own offline attempt (empty once offlined: no struct pages
    #: to read) — where the pages that would not move still are
    after: dict[str, int] = field(default_factory=dict)
    #: its classes in the last scan before its own offline (other blocks' offlines may have
    #: moved pages into it since ``before``)
    prior: dict[str, int] = field(default_factory=dict)
    #: a second attempt's remedy (``sync``, ``fsfreeze``); empty for the first attempt
    action: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "block": self.sim_block,
            "memory_block": self.memory_block,
            "offlined": self.offlined,
            "error": self.error,
            "seconds": self.seconds,
            "migrated": self.migrated,
            "failed": self.failed,
            "written_back": self.written_back,
            "pgpgout_kib": self.pgpgout_kib,
            "before": self.before,
            "after": self.after,
            "prior": self.prior,
            "action": self.action,
        }


@dataclass
class GuestReport:
    """A real kernel's run of a scenario (see module doc)."""

    scenario: str
    kernel: dict[str, str]
    accel: str
    blocks: list[int]
    dimm_blocks: list[int]
    pages_in_region: int
    file_pages_in_region: int
    dirty_pages_in_region: int
    #: used pages in the region that are not page cache: the guest's own (shell, kernel)
    other_pages_in_region: int
    migrated: int
    written_back: int
    pgpgout_kib: int
    failed: int
    offlined: bool
    reason: str | None
    per_block: list[BlockResult]
    #: page-cache pages still in the blocks that did not go, right after their offline
    #: failed (the guest's kpageflags scan): on 6.12 data=journal, the journal-held pages
    held: int
    dirty_before: int
    dirty_after: int
    file_pages_per_block: dict[int, int]
    verify: dict[str, Any]
    times: dict[str, float]
    wall_seconds: float
    sysctls: dict[str, int]
    not_comparable: list[str] = field(default_factory=list)
    console_log: str = ""
    #: second attempts after ``sync`` (plan-check's remedy), one per block that had failed
    remedies: list[BlockResult] = field(default_factory=list)
    #: a staged run's filesystems in order: the DIMM block each was put in and the page-cache
    #: pages it added to every online block (``placement``)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.offlined and bool(self.verify.get("ok"))

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "kernel": self.kernel,
            "accel": self.accel,
            "blocks": self.blocks,
            "dimm_blocks": self.dimm_blocks,
            "pages_in_region": self.pages_in_region,
            "file_pages_in_region": self.file_pages_in_region,
            "dirty_pages_in_region": self.dirty_pages_in_region,
            "other_pages_in_region": self.other_pages_in_region,
            "migrated": self.migrated,
            "written_back": self.written_back,
            "pgpgout_kib": self.pgpgout_kib,
            "failed": self.failed,
            "offlined": self.offlined,
            "reason": self.reason,
            "held": self.held,
            "per_block": [b.as_dict() for b in self.per_block],
            "dirty_before": self.dirty_before,
            "dirty_after": self.dirty_after,
            "file_pages_per_block": {str(k): v for k, v in self.file_pages_per_block.items()},
            "verify": self.verify,
            "times": self.times,
            "wall_seconds": self.wall_seconds,
            "sysctls": self.sysctls,
            "not_comparable": self.not_comparable,
            "console_log": self.console_log,
            "remedies": [b.as_dict() for b in self.remedies],
            "stages": self.stages,
            "ok": self.ok,
        }


def golden_md5s(files: Mapping[tuple[str, str], bytes]) -> dict[tuple[str, str], str]:
    return {key: hashlib.md5(bytes(data)).hexdigest() for key, data in files.items()}


def _vmstat(records: list[Record], tag: str) -> dict[str, int]:
    rec = first(records, "vmstat", tag=tag)
    if rec is None:
        return {}
    return {k: int(v) for k, v in rec.fields.items() if k != "tag" and v.lstrip("-").isdigit()}


def _delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def _classes(rec: Record) -> dict[str, int]:
    return {k: int(v) for k, v in rec.fields.items() if k not in ("tag", "sim", "block")}


def verify_md5s(records: list[Record], expected: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """Every file's md5 after unmount and remount against the golden bytes' md5."""
    seen = {
        (r.fields.get("fs", ""), r.fields.get("path", "")): r.fields.get("sum", "")
        for r in every(records, "md5")
    }
    mismatches = []
    for (fs, path), want in sorted(expected.items()):
        got = seen.get((fs, path))
        if got is None:
            mismatches.append(f"{fs}:{path}: no checksum from the guest")
        elif got != want:
            mismatches.append(f"{fs}:{path}: md5 {got} != golden {want}")
    return {
        "ok": not mismatches and bool(expected),
        "files_checked": sum(1 for key in expected if key in seen),
        "mismatches": mismatches,
    }


def build_report(
    records: list[Record],
    *,
    scenario: str,
    kernel: dict[str, str],
    accel: str,
    blocks: list[int],
    expected_md5: Mapping[tuple[str, str], str],
    wall_seconds: float,
    not_comparable: list[str],
    console_log: str = "",
) -> GuestReport:
    """The report for a guest run that reached ``RK end`` (pure: tests feed it console text)."""
    dimm_rec = first(records, "dimm")
    dimm = [int(n) for n in dimm_rec.fields.get("blocks", "").split(",") if n] if dimm_rec else []
    before_kpf = {r.int("sim"): _classes(r) for r in every(records, "kpf", tag="before_offline")}
    offline_recs = every(records, "offline")
    prev = _vmstat(records, "before_offline")
    start = prev
    per_block: list[BlockResult] = []
    prior_tag = "before_offline"
    for rec in offline_recs:
        sim = rec.int("sim")
        after = _vmstat(records, f"after_offline_{sim}")
        result = _block_result(rec, after, prev, before_kpf.get(sim, {}))
        result.after = _scan(records, f"after_offline_{sim}", sim)
        result.prior = _scan(records, prior_tag, sim)
        per_block.append(result)
        prior_tag = f"after_offline_{sim}"
        prev = after
    remedies: list[BlockResult] = []
    for rec in every(records, "remedy"):
        sim, action = rec.int("sim"), rec.fields.get("action", "sync")
        tag = f"after_remedy_{action}"
        last = (
            _vmstat(records, f"{tag}_{remedies[-1].sim_block}")
            if (remedies and remedies[-1].action == action)
            else _vmstat(records, tag)
        )
        after = _vmstat(records, f"{tag}_{sim}")
        result = _block_result(rec, after, last, before_kpf.get(sim, {}))
        result.action = action
        remedies.append(result)
    end = prev
    region = [before_kpf.get(b, {}) for b in blocks]
    failed_blocks = [b for b in per_block if not b.offlined]
    times = {}
    for kind in ("read", "write", "sync", "remount"):
        rec = first(records, kind)
        if rec is not None:
            times[f"{kind}_seconds"] = round(rec.float("t1") - rec.float("t0"), 2)
    times["offline_seconds"] = round(sum(b.seconds for b in per_block), 2)
    wrote = first(records, "write") or first(records, "staged")
    if wrote is not None and offline_recs:
        # from the last write to the first offline: jbd2's timer runs on meanwhile
        times["idle_seconds"] = round(offline_recs[0].float("t0") - wrote.float("t1"), 2)
    sysctls = {
        r.fields["name"]: r.int("value") for r in every(records, "sysctl") if "name" in r.fields
    }
    return GuestReport(
        scenario=scenario,
        kernel=kernel,
        accel=accel,
        blocks=blocks,
        dimm_blocks=dimm,
        pages_in_region=sum(c.get("used", 0) for c in region),
        file_pages_in_region=sum(c.get("file", 0) for c in region),
        dirty_pages_in_region=sum(c.get("file_dirty", 0) for c in region),
        other_pages_in_region=sum(c.get("used", 0) - c.get("file", 0) for c in region),
        migrated=_delta(end, start, "pgmigrate_success"),
        written_back=_delta(end, start, "nr_written"),
        pgpgout_kib=_delta(end, start, "pgpgout"),
        failed=_delta(end, start, "pgmigrate_fail"),
        offlined=len(per_block) == len(blocks) and not failed_blocks,
        held=sum(b.after.get("file", 0) for b in failed_blocks),
        reason=(
            f"block {failed_blocks[0].sim_block} (memory{failed_blocks[0].memory_block}): "
            f"-{failed_blocks[0].error}"
            if failed_blocks
            else None
        ),
        per_block=per_block,
        dirty_before=start.get("nr_dirty", 0),
        dirty_after=end.get("nr_dirty", 0),
        file_pages_per_block={b: c.get("file", 0) for b, c in sorted(before_kpf.items())},
        verify=verify_md5s(records, expected_md5),
        times=times,
        wall_seconds=round(wall_seconds, 1),
        sysctls=sysctls,
        not_comparable=not_comparable,
        console_log=console_log,
        remedies=remedies,
        stages=placement(records),
    )


def placement(records: list[Record]) -> list[dict[str, Any]]:
    """Where a staged run put each filesystem's page cache: per stage, the block it was
    meant for and the page-cache pages each online block gained during it (from the
    guest's kpageflags scan after the stage against the one after the stage before)."""
    stages: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for rec in every(records, "stage"):
        name = rec.fields.get("fs", "")
        scan = {r.int("block"): r.int("file") for r in every(records, "kpf", tag=f"stage_{name}")}
        gained = {b: n - seen.get(b, 0) for b, n in sorted(scan.items())}
        seen.update(scan)
        block = rec.int("block")
        stages.append(
            {
                "fs": name,
                "block": block,
                "sim": rec.int("sim"),
                "gained": gained,
                "in_block": gained.get(block, 0),
                "elsewhere": sum(n for b, n in gained.items() if b != block and n > 0),
            }
        )
    return stages


def _block_result(
    rec: Record, after: dict[str, int], prev: dict[str, int], before: dict[str, int]
) -> BlockResult:
    """One ``RK offline``/``RK remedy`` record and the vmstat deltas over it."""
    error = offline_error(rec.int("rc"), rec.fields.get("err", ""), rec.fields.get("state", ""))
    return BlockResult(
        sim_block=rec.int("sim"),
        memory_block=rec.int("block"),
        offlined=error is None,
        error=error,
        seconds=round(rec.float("t1") - rec.float("t0"), 2),
        migrated=_delta(after, prev, "pgmigrate_success"),
        failed=_delta(after, prev, "pgmigrate_fail"),
        written_back=_delta(after, prev, "nr_written"),
        pgpgout_kib=_delta(after, prev, "pgpgout"),
        before=before,
    )


def _scan(records: list[Record], tag: str, sim: int) -> dict[str, int]:
    """Block ``sim``'s kpageflags classes in the scan ``tag`` (empty: not scanned, offline)."""
    return next((_classes(r) for r in every(records, "kpf", tag=tag) if r.int("sim") == sim), {})
