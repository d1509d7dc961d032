"""Plan a hot-remove from a snapshot: which memory blocks can go, and at what cost.

Three steps, each usable alone:

1. :func:`classify` turns every frame's KPF word (and mapcount) into a **class** people read
   (free, file clean / with buffers / dirty, anon, huge, writeback, mlocked, and the blockers
   slab / reserved / page tables / other unmovable / hwpoison / offline / hole) and into what
   the simulator would build for it (a **kind**, modifiers, a folio order). Vectorised: no
   Python loop per page.
2. :func:`probe_units` asks the installed plugins what each kind of page costs: it builds a
   tiny machine holding one page of that kind (with
   :func:`hotremove.realmachine.synthesize.synthesize`
   (the builder, the one ``run --snapshot`` uses), offlines it with the real engine and records
   what happened (migrated, rebound, written back, write requests, simulated seconds). The
   plugins decide; the plan never hard-codes a strategy's behaviour.
3. :func:`plan` multiplies per block: the count of each kind × its probe. A block with any
   blocker page fails isolation as a whole (``has_unmovable_pages``), like the engine.

Heuristics, stated (kpageflags cannot say more):

* **Free pages.** ``KPF_BUDDY`` marks the first page of a free block (current kernels also
  every other free page). A page with no flags and mapcount 0 that follows a BUDDY page within
  the largest buddy block that can start there (``min(MAX_ORDER_NR_PAGES, lowest set bit of
  its pfn)``) is free. Other flagless pages are ``flagless``: free memory the kernel never
  touched (e.g. lazily initialised memmap) *or* a kernel allocation without page flags —
  indistinguishable here. ``flagless="free"`` (default) counts them as free,
  ``"unmovable"`` as blockers. The plan reports MemFree next to the sum for comparison.
* **Page-cache owner.** kpageflags does not name the filesystem of a page; every page-cache
  page is assumed to belong to one filesystem (``--fs``, default: the root filesystem).
* **Dirty pages and I/O.** Without per-buffer information a dirty page is one write of one
  page (the builder dirties whole pages on a 4 KiB-block image: one request each). I/O that
  a journal does in the background (jbd2 commit and checkpoint for data=journal) is batched
  in a real run, so there the plan's request count and time are an upper bound; the pages
  rebound, written back and failed still match.
* **Off-LRU pages** with page-cache or anonymous identity (per-CPU LRU batches, pages being
  isolated) are counted as movable: offlining drains those batches (``lru_cache_disable``).
  In-use pages with no such identity (kernel compound pages, mapped non-LRU pages) block.
* **Huge pages** move as one folio and need a free, aligned range of their size elsewhere;
  the plan counts free aligned ranges in the other online blocks (ignoring competition
  between them). Anonymous PMD-sized folios (2 MiB THP, hugetlb) are simulated as folios;
  smaller anonymous folios (mTHP) and large page-cache folios, which the simulator does not
  model, as base pages of their class (still shown as ``huge``).
* **Not visible:** extra references (pins), which buffers of a page are dirty, mlock of file
  mappings, swap devices. Mapped file pages are simulated unmapped.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hotremove.cost import preset as device_preset
from hotremove.engine import offline
from hotremove.hooks import Hooks
from hotremove.model.address_space import AddressSpace, Inode, SuperBlock
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import HPAGE_PMD_ORDER, PAGE_SIZE
from hotremove.realmachine.snapshot import (
    KPF_ACTIVE,
    KPF_ANON,
    KPF_BUDDY,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_DIRTY,
    KPF_HUGE,
    KPF_HWPOISON,
    KPF_LRU,
    KPF_MAPPEDTODISK,
    KPF_MLOCKED,
    KPF_NOPAGE,
    KPF_OFFLINE,
    KPF_PGTABLE,
    KPF_PRIVATE,
    KPF_REFERENCED,
    KPF_RESERVED,
    KPF_SLAB,
    KPF_SWAPBACKED,
    KPF_SWAPCACHE,
    KPF_THP,
    KPF_UNEVICTABLE,
    KPF_UPTODATE,
    KPF_WRITEBACK,
    KPF_ZERO_PAGE,
    Snapshot,
    SnapshotError,
)
from hotremove.realmachine.synthesize import (
    FS_OPTIONS,
    K_ANON,
    K_FILE,
    K_FILE_BH,
    K_FILE_DIRTY,
    K_FILE_DIRTY_BH,
    K_FREE,
    K_PGTABLE,
    K_RESERVED,
    K_SLAB,
    K_TAIL,
    KIND_NAMES,
    M_MLOCKED,
    M_SWAPCACHE,
    M_WRITEBACK,
    X_ACTIVE,
    X_MAPPEDTODISK,
    X_REFERENCED,
    FsSpec,
    Layout,
    synthesize,
)

#: Largest buddy block (MAX_PAGE_ORDER 10 on x86_64): 4 MiB.
MAX_ORDER_NR_PAGES = 1 << 10
#: Pages of the one folio size the simulator builds as a folio (2 MiB).
HPAGE_NR = 1 << HPAGE_PMD_ORDER

# -- classes (what people read) ---------------------------------------------------------------
FREE, FLAGLESS, FILE_CLEAN, FILE_BUFFERS, FILE_DIRTY, ANON, HUGE, WRITEBACK, MLOCKED = range(9)
SLAB, RESERVED, PGTABLE, UNMOVABLE, HWPOISON, OFFLINE, HOLE = range(9, 16)

#: name, description, blocker (with flagless="free")
CLASSES: tuple[tuple[str, str, bool], ...] = (
    ("free", "free (buddy allocator)", False),
    ("flagless", "no flags, not mapped: counted as free unless --flagless unmovable", False),
    ("file_clean", "page cache without buffer_heads, clean", False),
    ("file_buffers", "page cache with buffer_heads, clean", False),
    ("file_dirty", "page cache, dirty", False),
    ("anon", "anonymous, shmem or swap cache", False),
    ("huge", "huge page or large folio (moves as one unit)", False),
    ("writeback", "under writeback", False),
    ("mlocked", "mlocked / unevictable", False),
    ("slab", "slab", True),
    ("reserved", "reserved (memblock, zero page)", True),
    ("pgtable", "page tables", True),
    ("unmovable", "other kernel memory (in use, not on the LRU)", True),
    ("hwpoison", "hardware poisoned", True),
    ("offline", "PageOffline (balloon, virtio-mem)", True),
    ("hole", "no memmap (hole)", True),
)
CLASS_NAMES = tuple(c[0] for c in CLASSES)
_BLOCKERS = np.array([c[2] for c in CLASSES])

_ORDER_SHIFT = 7  # unit code = kind | mods << 4 | order << 7
_NR_CODES = 1 << 11


class _Bits:
    """Boolean masks of KPF bits, each computed once, on 32-bit halves (half the memory
    traffic of testing the uint64 words)."""

    def __init__(self, flags: np.ndarray) -> None:
        self.lo = flags.astype(np.uint32)  # truncates: bits 0-31
        self.hi = (flags >> np.uint64(32)).astype(np.uint32)
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, *bits: int) -> np.ndarray:
        """Pages with any of ``bits`` set."""
        out = None
        for bit in bits:
            mask = self._cache.get(bit)
            if mask is None:
                half, b = (self.lo, bit) if bit < 32 else (self.hi, bit - 32)
                mask = self._cache[bit] = (half & np.uint32(1 << b)) != 0
            out = mask if out is None else out | mask
        assert out is not None
        return out


@dataclass
class Classified:
    """Per-frame arrays with the snapshot's shape (rows = memory blocks)."""

    cls: np.ndarray  # uint8 class (CLASSES)
    layout: Layout  # what the simulator builds for each frame

    def class_counts(self) -> np.ndarray:
        """(rows, len(CLASSES)) page counts."""
        rows = self.cls.shape[0]
        flat = self.cls.astype(np.int64) + np.arange(rows)[:, None] * len(CLASSES)
        return np.bincount(flat.ravel(), minlength=rows * len(CLASSES)).reshape(rows, -1)


def classify(snap: Snapshot, flagless: str = "free") -> Classified:
    """Every frame's class and simulator kind (see the module doc for the heuristics)."""
    if flagless not in ("free", "unmovable"):
        raise ValueError(f"flagless must be 'free' or 'unmovable', not {flagless!r}")
    f, c = snap.flags, snap.counts
    bit = _Bits(f)
    blank = (f == 0) & (c == 0)
    anonish = bit(KPF_ANON, KPF_SWAPBACKED, KPF_HUGE)
    identity = bit(KPF_LRU, KPF_ANON, KPF_SWAPBACKED, KPF_HUGE, KPF_THP, KPF_UPTODATE)
    identity |= bit(KPF_DIRTY, KPF_PRIVATE, KPF_MAPPEDTODISK)
    cls = np.select(
        [
            bit(KPF_NOPAGE),
            bit(KPF_OFFLINE),
            bit(KPF_HWPOISON),
            bit(KPF_BUDDY),
            bit(KPF_RESERVED, KPF_ZERO_PAGE),
            bit(KPF_SLAB),
            bit(KPF_PGTABLE),
            blank,
            ~identity,
            bit(KPF_WRITEBACK),
            bit(KPF_MLOCKED, KPF_UNEVICTABLE),
            bit(KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_HUGE, KPF_THP),
            anonish,
            bit(KPF_DIRTY),
            bit(KPF_PRIVATE),
        ],
        [
            HOLE,
            OFFLINE,
            HWPOISON,
            FREE,
            RESERVED,
            SLAB,
            PGTABLE,
            FLAGLESS,
            UNMOVABLE,
            WRITEBACK,
            MLOCKED,
            HUGE,
            ANON,
            FILE_DIRTY,
            FILE_BUFFERS,
        ],
        FILE_CLEAN,
    ).astype(np.uint8)
    _buddy_tails(snap, cls, blank)

    # what the simulator builds: base kind of every movable page
    dirty = bit(KPF_DIRTY, KPF_WRITEBACK)  # a page under writeback was dirty
    private = bit(KPF_PRIVATE)
    file_kind = np.select(
        [dirty & private, dirty, private], [K_FILE_DIRTY_BH, K_FILE_DIRTY, K_FILE_BH], K_FILE
    )
    kind = np.where(anonish, K_ANON, file_kind).astype(np.uint8)
    kind[cls == FREE] = K_FREE
    kind[cls == FLAGLESS] = K_FREE if flagless == "free" else K_RESERVED
    kind[cls == SLAB] = K_SLAB
    kind[cls == PGTABLE] = K_PGTABLE
    blocked = np.isin(cls, [RESERVED, UNMOVABLE, HWPOISON, OFFLINE, HOLE])
    kind[blocked] = K_RESERVED
    mods = (
        np.where(bit(KPF_WRITEBACK), M_WRITEBACK, 0)
        | np.where(bit(KPF_MLOCKED, KPF_UNEVICTABLE), M_MLOCKED, 0)
        | np.where(anonish & bit(KPF_SWAPCACHE), M_SWAPCACHE, 0)
    ).astype(np.uint8)
    order = np.zeros_like(cls)
    _folios(bit, cls, kind, mods, order)
    movable = kind != K_FREE
    mods[~movable] = 0
    extra = (
        np.where(bit(KPF_REFERENCED), X_REFERENCED, 0)
        | np.where(bit(KPF_ACTIVE), X_ACTIVE, 0)
        | np.where(bit(KPF_MAPPEDTODISK), X_MAPPEDTODISK, 0)
    ).astype(np.uint8)
    return Classified(cls, Layout(kind=kind, mods=mods, order=order, extra=extra))


def _buddy_tails(snap: Snapshot, cls: np.ndarray, blank: np.ndarray) -> None:
    """Flagless pages inside the largest buddy block a preceding BUDDY page can head → free."""
    ppb = cls.shape[1]
    idx = np.arange(ppb)
    last = np.maximum.accumulate(np.where(blank, -1, idx[None, :]), axis=1)
    candidates = blank & (last >= 0)
    if not candidates.any():
        return
    r, i = np.nonzero(candidates)
    q = last[r, i]
    heads = cls[r, q] == FREE
    base = np.array([b.index for b in snap.blocks], dtype=np.int64)[r] * ppb
    pfn = base + q
    lowbit = np.where(pfn == 0, MAX_ORDER_NR_PAGES, pfn & -pfn)
    inside = heads & (i - q < np.minimum(lowbit, MAX_ORDER_NR_PAGES))
    cls[r[inside], i[inside]] = FREE


def _folios(
    bit: _Bits, cls: np.ndarray, kind: np.ndarray, mods: np.ndarray, order: np.ndarray
) -> None:
    """Compound pages: tails take their head's class; an aligned anonymous PMD-sized folio
    becomes one simulated folio (head: its order, tails: K_TAIL)."""
    ppb = cls.shape[1]
    head = np.flatnonzero(bit(KPF_COMPOUND_HEAD))
    if not head.size:
        return
    starts = ~bit(KPF_COMPOUND_TAIL).ravel()  # a folio ends at a page that is no tail ...
    starts[::ppb] = True  # ... or at the end of its memory block
    breaks = np.append(np.flatnonzero(starts), cls.size)
    end = breaks[np.searchsorted(breaks, head, side="right")]
    length = end - head
    flat_cls, flat_kind, flat_mods = cls.reshape(-1), kind.reshape(-1), mods.reshape(-1)
    flat_order = order.reshape(-1)
    nr_tails = length - 1
    tails_of = np.repeat(head, nr_tails)  # each tail's head
    first = np.cumsum(nr_tails) - nr_tails  # where each folio's tails start in tails_of
    tail_pos = tails_of + 1 + np.arange(tails_of.size) - np.repeat(first, nr_tails)
    flat_cls[tail_pos] = flat_cls[tails_of]
    flat_kind[tail_pos] = flat_kind[tails_of]
    flat_mods[tail_pos] = flat_mods[tails_of]
    folio = (flat_kind[head] == K_ANON) & (length == HPAGE_NR) & ((head % ppb) % HPAGE_NR == 0)
    flat_order[head[folio]] = np.log2(length[folio]).astype(np.uint8)
    in_folio = np.repeat(folio, length - 1)
    flat_kind[tail_pos[in_folio]] = K_TAIL
    flat_mods[tail_pos[in_folio]] = 0


# -- probes: what one unit of each kind costs, asked of the installed plugins --------------------
def unit_code(kind: int, mods: int = 0, order: int = 0) -> int:
    return kind | mods << 4 | order << _ORDER_SHIFT


def decode_unit(code: int) -> tuple[int, int, int]:
    return code & 0xF, code >> 4 & 0x7, code >> _ORDER_SHIFT


def unit_name(code: int) -> str:
    """``file_dirty_bh+writeback``, ``anon/order9+mlocked``."""
    kind, mods, order = decode_unit(code)
    name = KIND_NAMES[kind] + (f"/order{order}" if order else "")
    for bit, label in ((M_WRITEBACK, "writeback"), (M_MLOCKED, "mlocked"), (M_SWAPCACHE, "swap")):
        if mods & bit:
            name += f"+{label}"
    return name


@dataclass(frozen=True)
class UnitCost:
    """What the engine did with one unit (a page, or an anonymous folio) of one kind."""

    code: int
    pages: int
    migrated: int
    rebound: int
    written_back: int
    failed: int
    reason: str
    write_requests: int
    journal_requests: int
    bytes_written: int
    cpu_seconds: float
    io_seconds: float


def probe_units(
    codes: list[int],
    fs: FsSpec,
    hooks: Hooks,
    *,
    device: str,
    policy: str = "auto",
    mode: MigrateMode = MigrateMode.SYNC,
) -> dict[int, UnitCost]:
    """Offline one unit of each kind on a machine of its own (two tiny blocks: free memory
    first, the unit second) and record the outcome. Separate machines keep journals apart."""
    costs: dict[int, UnitCost] = {}
    with tempfile.TemporaryDirectory(prefix="hotremove-probe-") as tmp:
        for code in sorted(set(codes)):
            kind, mods, order = decode_unit(code)
            nr = 1 << order
            per_block = max(8, nr)
            layout = Layout.free(2 * per_block)
            layout.kind[per_block] = kind
            layout.mods[per_block] = mods
            layout.order[per_block] = order
            layout.kind[per_block + 1 : per_block + nr] = K_TAIL
            built = synthesize(
                layout,
                per_block * PAGE_SIZE,
                fs,
                hooks,
                Path(tmp) / f"u{code}",
                device=device,
                remove=[1],
                name=f"probe{code}",
            )
            machine = built.machine
            try:
                io, clock = machine.io, machine.clock
                before = (io.write_requests, io.journal_requests, io.bytes_written)
                cpu, iosec = clock.cpu_seconds, clock.io_seconds
                result = offline(machine, hooks, [1], mode=mode, policy=policy, checks=False)
                costs[code] = UnitCost(
                    code=code,
                    pages=nr,
                    migrated=result.migrated,
                    rebound=result.rebound,
                    written_back=result.written_back,
                    failed=len(result.failed),
                    reason=str(result.failed[0]["reason"]) if result.failed else "",
                    write_requests=io.write_requests - before[0],
                    journal_requests=io.journal_requests - before[1],
                    bytes_written=io.bytes_written - before[2],
                    cpu_seconds=clock.cpu_seconds - cpu,
                    io_seconds=clock.io_seconds - iosec,
                )
            finally:
                machine.close()
    return costs


# -- the plan ------------------------------------------------------------------------------------
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
        }


def default_fs(snap: Snapshot) -> FsSpec:
    """The root filesystem's type and options, or ext4 when the snapshot names none."""
    root = snap.root
    return FsSpec.from_mount(root.fstype, root.options) if root else FsSpec("ext4")


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
        spec = FsSpec.from_mount(fs)
    if options is not None:
        opts = tuple(o.strip() for o in options.split(",") if o.strip())
        unknown = [o for o in opts if o not in FS_OPTIONS]
        if unknown:
            raise SnapshotError(
                f"--fs-options: unknown option {unknown[0]!r} (known: {', '.join(FS_OPTIONS)})"
            )
        spec = FsSpec.from_mount(spec.type, opts)
    return spec


def strategy_for(fs: FsSpec, hooks: Hooks, policy: str) -> tuple[str, str, bool]:
    """Ask the plugins, as the engine would, how this filesystem's pages migrate."""
    sb = SuperBlock(s_id="plan", s_type=fs.type, s_blocksize=fs.block_size, s_bdev=None)  # type: ignore[arg-type]
    mapping = AddressSpace(Inode(0, "plan", 0, sb, []), fs.a_ops)
    strategy, plugin = hooks.migrate_strategy(mapping, policy)
    return strategy.name, plugin, bool(strategy.rebinds)


def plan(
    snap: Snapshot,
    hooks: Hooks,
    *,
    fs: FsSpec | str | None = None,
    device: str = "nvme",
    policy: str = "auto",
    flagless: str = "free",
) -> Plan:
    """Classify, probe and predict every memory block of ``snap`` (see the module doc)."""
    fs = resolve_fs(snap, fs)
    device_preset(device)  # an unknown preset is a one-line error before any work
    strategy, plugin, rebinds = strategy_for(fs, hooks, policy)
    cl = classify(snap, flagless)
    rows, ppb = cl.cls.shape
    lay = cl.layout
    class_counts = cl.class_counts()
    blocker_classes = _BLOCKERS.copy()
    blocker_classes[FLAGLESS] = flagless == "unmovable"
    movable = (lay.kind != K_FREE) & (lay.kind != K_TAIL) & (lay.kind < K_RESERVED)
    codes = (
        lay.kind.astype(np.int64)
        | lay.mods.astype(np.int64) << 4
        | lay.order.astype(np.int64) << _ORDER_SHIFT
    )
    flat = (codes + np.arange(rows)[:, None] * _NR_CODES)[movable]
    units = np.bincount(flat, minlength=rows * _NR_CODES).reshape(rows, _NR_CODES)
    blocked_rows = (class_counts[:, blocker_classes] > 0).any(axis=1)
    wanted = np.flatnonzero(units[~blocked_rows].sum(axis=0))
    probes = probe_units([int(c) for c in wanted], fs, hooks, device=device, policy=policy)

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
        fs.a_ops.name,
        strategy,
        plugin,
        rebinds,
        device,
        policy,
        flagless,
        blocks,
        probes,
        totals,
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
