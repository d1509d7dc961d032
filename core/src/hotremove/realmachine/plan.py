"""Plan a hot-remove from a snapshot: which memory blocks can go, and at what cost.

Three steps, each usable alone:

1. :func:`hotremove.realmachine.classes.classify` turns every frame's KPF word (and mapcount)
   into a **class** people read and into what the simulator would build for it (its
   heuristics are stated there);
2. :func:`hotremove.realmachine.probe.probe_units` asks the installed plugins what each kind
   of page costs, offlining one unit of it on a tiny machine of its own;
3. :func:`plan` multiplies per block: the count of each kind × its probe. A block with any
   blocker page fails isolation as a whole (``has_unmovable_pages``), like the engine.

Heuristics, stated (kpageflags cannot say more):

* **Free pages.** Flagless pages (see :mod:`~hotremove.realmachine.classes`) are free with
  ``flagless="free"`` (default), blockers with ``"unmovable"``. The plan reports MemFree next
  to the sum for comparison.
* **Page-cache owner.** kpageflags does not name the filesystem of a page; every page-cache
  page is assumed to belong to one filesystem (``--fs``, default: the root filesystem).
* **Dirty pages and I/O.** Without per-buffer information a dirty page is one write of one
  page (the builder dirties whole pages on a 4 KiB-block image: one request each). I/O that
  a journal does in the background (jbd2 commit and checkpoint for data=journal) is batched
  in a real run, so there the plan's request count and time are an upper bound; the pages
  rebound, written back and failed still match.
* **data=journal.** A page written within jbd2's commit interval (5 s) is not dirty yet in
  its flags (its buffers are "jbddirty" until the commit): snapshot after that long, or it is
  counted clean.
* **Huge pages** move as one folio and need a free, aligned range of their size elsewhere;
  the plan counts free aligned ranges in the other online blocks (ignoring competition
  between them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hotremove.hooks import Hooks
from hotremove.kernels import DEFAULT_KERNEL, Kernel, get_kernel
from hotremove.model.address_space import AddressSpace, Inode, SuperBlock
from hotremove.model.cost import preset as device_preset
from hotremove.model.page import PAGE_SIZE
from hotremove.realmachine.classes import (
    BLOCKERS,
    CLASS_NAMES,
    FLAGLESS,
    NR_CODES,
    classify,
    decode_unit,
    unit_codes,
    unit_name,
)
from hotremove.realmachine.order import OrderPlan
from hotremove.realmachine.probe import UnitCost, hold_clean_journalled, probe_units
from hotremove.realmachine.snapshot import Snapshot, SnapshotError
from hotremove.realmachine.synthesize import (
    K_FREE,
    K_RESERVED,
    K_TAIL,
    FsSpec,
    type_options,
)
from hotremove.scenario import SNAPSHOT_FS_TYPE


@dataclass
class BlockPlan:
    """One memory block: what is in it, whether it can go, and what the engine would do."""

    index: int
    state: str
    zone: str
    classes: dict[str, int]
    units: dict[int, int]  # unit code → count
    blockers: dict[str, int]  # blocker class → pages
    reasons: list[str] = field(default_factory=list)
    # the engine's result on this block alone (what ``run --snapshot`` measures)
    migrated: int = 0  # folios, as the engine counts them
    moved_pages: int = 0
    rebound: int = 0
    written_back: int = 0
    failed: int = 0
    write_requests: int = 0
    journal_requests: int = 0
    bytes_written: int = 0
    cpu_seconds: float = 0.0
    io_seconds: float = 0.0
    rank: int = 0
    #: what cannot be seen in the page flags but may still stop the block (stated, not scored)
    warnings: list[str] = field(default_factory=list)
    #: for a block that cannot go: what an operator could do, and the prediction after it
    remedy: dict[str, Any] | None = None

    @property
    def reason_class(self) -> str:
        """How the kernel's offline ends, in the words of its error: ``ok``; ``state`` (not
        online); ``invalid`` (-EINVAL: mixed zones, holes); ``unmovable`` (-EBUSY at
        isolation: slab, page tables, reserved, ...); ``enomem``; ``migration`` (pages that
        will not move: ``offline_pages`` retries until a signal, -EINTR)."""
        if self.offlinable:
            return "ok"
        if self.state != "online":
            return "state"
        if self.zone == "none" or self.blockers.get("hole"):
            return "invalid"
        if self.blockers:
            return "unmovable"
        if any(r.startswith("migration fails") for r in self.reasons):
            return "migration"
        return "enomem" if any("ENOMEM" in r for r in self.reasons) else "other"

    @property
    def journal_held(self) -> bool:
        """Migration fails on buffers jbd2 still references (data=journal on 6.12)."""
        return any("jbd2" in r for r in self.reasons)

    @property
    def offlinable(self) -> bool:
        return not self.reasons

    @property
    def copied(self) -> int:
        """Pages moved by a plain copy (no buffers rebound, nothing written)."""
        return self.moved_pages - self.rebound - self.written_back

    @property
    def simulated_seconds(self) -> float:
        return self.cpu_seconds + self.io_seconds

    @property
    def category(self) -> str:
        """What the picture colours the block by: ``free``, ``cost`` or the main blocker."""
        if self.offlinable:
            return "cost" if self.moved_pages else "free"
        if self.state != "online":
            return "state"
        if self.zone == "none":
            return "zones"
        if self.blockers:
            return _by_count(self.blockers)[0][0]
        return "enomem" if any("ENOMEM" in r for r in self.reasons) else "failures"

    def predicted(self) -> dict[str, Any]:
        return {
            "offlined": self.offlinable,
            "migrated": self.migrated,
            "moved_pages": self.moved_pages,
            "rebound": self.rebound,
            "written_back": self.written_back,
            "copied": self.copied,
            "failed": self.failed,
            "write_requests": self.write_requests,
            "journal_requests": self.journal_requests,
            "bytes_written": self.bytes_written,
            "cpu_seconds": self.cpu_seconds,
            "io_seconds": self.io_seconds,
            "simulated_seconds": self.simulated_seconds,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "block": self.index,
            "state": self.state,
            "zone": self.zone,
            "offlinable": self.offlinable,
            "reasons": self.reasons,
            "reason_class": self.reason_class,
            "journal_held": self.journal_held,
            "warnings": self.warnings,
            "remedy": self.remedy,
            "classes": self.classes,
            "units": {unit_name(c): n for c, n in sorted(self.units.items())},
            "predicted": self.predicted(),
        }


@dataclass
class Plan:
    snapshot: Snapshot
    fs: FsSpec
    a_ops: str
    strategy: str
    plugin: str
    rebinds: bool
    device: str
    policy: str
    flagless: str
    blocks: list[BlockPlan]  # ranked: cheapest first, blocked last
    probes: dict[int, UnitCost]
    totals: dict[str, int]
    #: the modelled kernel whose rules the prediction uses
    kernel: str = DEFAULT_KERNEL
    #: free frames of the online blocks (rows × frames), for :mod:`~hotremove.realmachine.order`
    free: np.ndarray | None = field(default=None, repr=False)
    #: the cheapest order to remove several blocks (:func:`~.removal.plan_removal`)
    order: OrderPlan | None = None

    def block(self, index: int) -> BlockPlan:
        for b in self.blocks:
            if b.index == index:
                return b
        raise KeyError(index)

    def as_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "snapshot": {
                "kernel": snap.kernel,
                "taken": snap.taken,
                "source": snap.source,
                "block_size": snap.block_size,
                "blocks": len(snap.blocks),
                "meminfo": snap.meminfo,
            },
            "fs": {
                "type": self.fs.type,
                "label": self.fs.label,
                "a_ops": self.a_ops,
                "strategy": self.strategy,
                "plugin": self.plugin,
                "rebinds": self.rebinds,
            },
            "kernel": self.kernel,
            "device": self.device,
            "policy": self.policy,
            "flagless": self.flagless,
            "totals": self.totals,
            "offlinable": sum(b.offlinable for b in self.blocks),
            "probes": {
                unit_name(c): {k: v for k, v in vars(u).items() if k != "code"}
                for c, u in sorted(self.probes.items())
            },
            "blocks": [b.as_dict() for b in self.blocks],
            "order": self.order.as_dict() if self.order else None,
        }


def default_fs(snap: Snapshot) -> FsSpec:
    """The root filesystem's type and options — or, without a block device on ``/`` (a
    ramfs root), the only mounted block device's — or, when the snapshot names none, the
    type ``scenarios/defaults.toml`` gives snapshots."""
    root = snap.root
    if root is None and len({m.device for m in snap.mounts}) == 1:
        root = snap.mounts[-1]
    return FsSpec.from_mount(root.fstype, root.options) if root else FsSpec(SNAPSHOT_FS_TYPE)


def resolve_fs(
    snap: Snapshot, fs: FsSpec | str | None = None, options: str | None = None
) -> FsSpec:
    """``--fs TYPE`` and ``--fs-options a,b`` against the snapshot: no type means the root
    filesystem; the root's mount options apply when the type is the root's and no options
    are given. Unknown options are a one-line error."""
    root = default_fs(snap)
    if isinstance(fs, FsSpec):
        spec = fs
    elif fs is None or (fs == root.type and options is None):
        spec = root
    else:
        spec = FsSpec.chosen(fs)
    if options is not None:
        opts = tuple(o.strip() for o in options.split(",") if o.strip())
        known = type_options(spec.type)
        unknown = [o for o in opts if o not in known]
        if unknown:
            raise SnapshotError(
                f"--fs-options: unknown option {unknown[0]!r} for {spec.type} (known: "
                f"{', '.join(known) or 'none'})"
            )
        spec = FsSpec.from_mount(spec.type, opts)
    return spec


def strategy_for(
    fs: FsSpec, hooks: Hooks, policy: str, kernel: Kernel | None = None
) -> tuple[str, str, bool]:
    """Ask the plugins, as the engine would, how this filesystem's pages migrate in
    ``kernel`` (default: the newest modelled)."""
    kernel = kernel or get_kernel(DEFAULT_KERNEL)
    sb = SuperBlock(s_id="plan", s_type=fs.type, s_blocksize=fs.block_size, s_bdev=None)  # type: ignore[arg-type]
    mapping = AddressSpace(Inode(0, "plan", 0, sb, []), fs.aops_in(kernel))
    strategy, plugin = hooks.migrate_strategy(mapping, policy, kernel)
    return strategy.name, plugin, bool(strategy.rebinds)


def plan(
    snap: Snapshot,
    hooks: Hooks,
    *,
    fs: FsSpec | str | None = None,
    device: str = "nvme",
    policy: str = "auto",
    flagless: str = "free",
    kernel: Kernel | None = None,
    journal_clean: str = "free",
) -> Plan:
    """Classify, probe and predict every memory block of ``snap`` (see the module doc), by
    the rules of ``kernel`` (default: the newest modelled). ``journal_clean="held"``: clean
    data=journal pages with buffers count as journal-held (:func:`hold_clean_journalled`).
    Warnings and remedies are :func:`hotremove.realmachine.remedy.advise`'s."""
    fs = resolve_fs(snap, fs)
    device_preset(device)  # an unknown preset is a one-line error before any work
    kernel = kernel or get_kernel(DEFAULT_KERNEL)
    strategy, plugin, rebinds = strategy_for(fs, hooks, policy, kernel)
    cl = classify(snap, flagless)
    rows, ppb = cl.cls.shape
    lay = cl.layout
    class_counts = cl.class_counts()
    blocker_classes = BLOCKERS.copy()
    blocker_classes[FLAGLESS] = flagless == "unmovable"
    movable = (lay.kind != K_FREE) & (lay.kind != K_TAIL) & (lay.kind < K_RESERVED)
    flat = (unit_codes(lay) + np.arange(rows)[:, None] * NR_CODES)[movable]
    units = np.bincount(flat, minlength=rows * NR_CODES).reshape(rows, NR_CODES)
    blocked_rows = (class_counts[:, blocker_classes] > 0).any(axis=1)
    wanted = np.flatnonzero(units[~blocked_rows].sum(axis=0))
    probes = probe_units(
        [int(c) for c in wanted], fs, hooks, device=device, policy=policy, kernel=kernel
    )
    if journal_clean == "held":
        hold_clean_journalled(probes, fs, hooks, device=device, policy=policy, kernel=kernel)

    online = np.array([b.state == "online" for b in snap.blocks])
    free = (lay.kind == K_FREE) & online[:, None]
    free_per_row = free.sum(axis=1)
    free_ranges = {}  # order → free aligned ranges per row
    blocks = []
    for r, info in enumerate(snap.blocks):
        bp = BlockPlan(
            index=info.index,
            state=info.state,
            zone=info.valid_zones,
            classes={CLASS_NAMES[c]: int(n) for c, n in enumerate(class_counts[r]) if n},
            units={int(c): int(units[r, c]) for c in np.flatnonzero(units[r])},
            blockers={
                CLASS_NAMES[c]: int(class_counts[r, c])
                for c in np.flatnonzero(blocker_classes)
                if class_counts[r, c]
            },
        )
        _block_reasons(bp)
        if bp.blockers:
            bp.failed = sum(bp.blockers.values())  # the engine reports each one
        else:
            _predict(bp, probes)
            _check_room(bp, r, free, free_per_row, free_ranges, ppb)
        blocks.append(bp)
    blocks.sort(key=_rank_key)
    for rank, bp in enumerate(blocks, start=1):
        bp.rank = rank
    totals = {name: int(n) for name, n in zip(CLASS_NAMES, class_counts.sum(axis=0), strict=True)}
    return Plan(
        snap,
        fs,
        fs.aops_in(kernel).name,
        strategy,
        plugin,
        rebinds,
        device,
        policy,
        flagless,
        blocks,
        probes,
        totals,
        kernel.version,
        free=free,
    )


def _block_reasons(bp: BlockPlan) -> None:
    """What stops the block before any page moves (mm/memory_hotplug.c's offline_pages)."""
    if bp.state != "online":
        bp.reasons.append(f"block is {bp.state}")
        return
    if bp.zone == "none":
        bp.reasons.append("mixed zones (valid_zones none): -EINVAL")
    unmovable = dict(bp.blockers)
    holes = unmovable.pop("hole", 0)
    if holes:
        bp.reasons.append(f"memory holes: {holes} pages without memmap (-EINVAL)")
    if unmovable:
        what = ", ".join(f"{n} {name}" for name, n in _by_count(unmovable))
        bp.reasons.append(f"unmovable: {what} (-EBUSY)")


def _by_count(d: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))


def _predict(bp: BlockPlan, probes: dict[int, UnitCost]) -> None:
    failures: dict[str, int] = {}
    for code, n in bp.units.items():
        u = probes[code]
        bp.migrated += n * u.migrated
        bp.moved_pages += n * u.pages * (u.migrated > 0)
        bp.rebound += n * u.rebound
        bp.written_back += n * u.written_back
        bp.failed += n * u.failed
        bp.write_requests += n * u.write_requests
        bp.journal_requests += n * u.journal_requests
        bp.bytes_written += n * u.bytes_written
        bp.cpu_seconds += n * u.cpu_seconds
        bp.io_seconds += n * u.io_seconds
        if u.failed:
            failures[f"{unit_name(code)}: {u.reason}"] = n * u.failed
    if failures:
        what = ", ".join(f"{n} {name}" for name, n in _by_count(failures))
        bp.reasons.append(f"migration fails: {what}")


def _check_room(
    bp: BlockPlan,
    row: int,
    free: np.ndarray,
    free_per_row: np.ndarray,
    free_ranges: dict[int, np.ndarray],
    ppb: int,
) -> None:
    """Enough free memory, and free aligned ranges for its huge folios, in the other blocks?"""
    elsewhere = int(free_per_row.sum() - free_per_row[row])
    if bp.moved_pages > elsewhere:
        bp.reasons.append(f"-ENOMEM: {bp.moved_pages} pages to move, {elsewhere} free elsewhere")
    folios: dict[int, int] = {}
    for code, n in bp.units.items():
        order = decode_unit(code)[2]
        if order:
            folios[order] = folios.get(order, 0) + n
    for order, n in sorted(folios.items()):
        if order not in free_ranges:
            nr = 1 << order
            free_ranges[order] = free.reshape(free.shape[0], ppb // nr, nr).all(axis=2).sum(axis=1)
        ranges = free_ranges[order]
        room = int(ranges.sum() - ranges[row])
        if n > room:
            bp.reasons.append(
                f"-ENOMEM: {n} folios of {(PAGE_SIZE << order) >> 10} KiB, {room} free "
                "aligned ranges elsewhere"
            )


def _rank_key(bp: BlockPlan) -> tuple[Any, ...]:
    if bp.offlinable:
        return (0, bp.simulated_seconds, bp.write_requests, bp.moved_pages, bp.index)
    return (1, sum(bp.blockers.values()), len(bp.reasons), bp.index)
