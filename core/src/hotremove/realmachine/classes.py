"""Classify a snapshot's frames from their KPF words (and mapcounts), vectorised: no Python
loop per page.

Every frame gets a **class** people read (:data:`CLASSES`, names from
:mod:`hotremove.sim.pageclass`: free, file page cache with buffers / clean without / dirty, anon,
huge, writeback, mlocked, and the blockers slab / reserved / page tables / other unmovable /
hwpoison / offline / hole) and what the simulator would build for it (a
:class:`~hotremove.realmachine.synthesize.Layout`: a **kind**, modifiers, a folio order). A
kind, its modifiers and its order packed in one integer is a **unit code**: what the plan
counts per block and probes once (:func:`unit_code`, :func:`unit_name`).

Heuristics, stated (kpageflags cannot say more):

* **Free pages.** ``KPF_BUDDY`` marks the first page of a free block (current kernels also
  every other free page). A page with no flags and mapcount 0 that follows a BUDDY page within
  the largest buddy block that can start there (``min(MAX_ORDER_NR_PAGES, lowest set bit of
  its pfn)``) is free. Other flagless pages are ``flagless``: free memory the kernel never
  touched (e.g. lazily initialised memmap) *or* a kernel allocation without page flags —
  indistinguishable here. ``flagless="free"`` (default) counts them as free,
  ``"unmovable"`` as blockers.
* **Races.** Flags and mapcounts are read one after the other: in a ZONE_MOVABLE block a
  page with no flags but a mapcount was allocated in between and counts as flagless.
* **Off-LRU pages** with page-cache or anonymous identity (per-CPU LRU batches, pages being
  isolated) are counted as movable: offlining drains those batches (``lru_cache_disable``).
  In-use pages with no such identity (kernel compound pages, mapped non-LRU pages) block.
* **Huge pages.** Anonymous PMD-sized folios (2 MiB THP, hugetlb) are simulated as folios;
  smaller anonymous folios (mTHP) and large page-cache folios, which the simulator does not
  model, as base pages of their class (still shown as ``huge``).
* **Not visible:** extra references (pins), which buffers of a page are dirty, mlock of file
  mappings, swap devices. Mapped file pages are simulated unmapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotremove.model.page import HPAGE_NR
from hotremove.realmachine.kpageflags import (
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
)
from hotremove.realmachine.snapshot import (
    Snapshot,
)
from hotremove.realmachine.synthesize import (
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
    Layout,
)
from hotremove.sim import pageclass as pc

#: Largest buddy block (MAX_PAGE_ORDER 10 on x86_64): 4 MiB.
MAX_ORDER_NR_PAGES = 1 << 10

# -- classes (what people read) ---------------------------------------------------------------
FREE, FLAGLESS, FILE_CLEAN_NOBH, FILE_BUFFERS, FILE_DIRTY, ANON, HUGE, WRITEBACK, MLOCKED = range(9)
SLAB, RESERVED, PGTABLE, UNMOVABLE, HWPOISON, OFFLINE, HOLE = range(9, 16)

#: name, description, blocker (with flagless="free")
CLASSES: tuple[tuple[str, str, bool], ...] = (
    (pc.FREE, "free (buddy allocator)", False),
    (pc.FLAGLESS, "no flags, not mapped: counted as free unless --flagless unmovable", False),
    (pc.FILE_CLEAN_NOBH, "page cache without buffer_heads, clean", False),
    (pc.FILE_BUFFERS, "page cache with buffer_heads, clean", False),
    (pc.FILE_DIRTY, "page cache, dirty", False),
    (pc.ANON, "anonymous, shmem or swap cache", False),
    (pc.HUGE, "huge page or large folio (moves as one unit)", False),
    (pc.WRITEBACK, "under writeback", False),
    (pc.MLOCKED, "mlocked / unevictable", False),
    (pc.SLAB, "slab", True),
    (pc.RESERVED, "reserved (memblock, zero page)", True),
    (pc.PGTABLE, "page tables", True),
    (pc.UNMOVABLE, "other kernel memory (in use, not on the LRU)", True),
    (pc.HWPOISON, "hardware poisoned", True),
    (pc.OFFLINE, "PageOffline (balloon, virtio-mem)", True),
    (pc.HOLE, "no memmap (hole)", True),
)
CLASS_NAMES = tuple(c[0] for c in CLASSES)
#: Which classes block their memory block (FLAGLESS too with flagless="unmovable").
BLOCKERS = np.array([c[2] for c in CLASSES])

# -- units (what the simulator builds and the plan probes) ---------------------------------------
_ORDER_SHIFT = 7  # unit code = kind | mods << 4 | order << 7
#: Unit codes are below this.
NR_CODES = 1 << 11


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
    # ZONE_MOVABLE holds movable allocations only: there a page with no flags but a mapcount
    # is one allocated between the reads of its flags and of its count (page cache and
    # anonymous pages carry flags), not kernel memory
    movable_zone = np.array([b.valid_zones == "Movable" for b in snap.blocks])[:, None]
    blank = (f == 0) & ((c == 0) | movable_zone)
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
        FILE_CLEAN_NOBH,
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
    heads = bit(KPF_COMPOUND_HEAD).ravel()
    head = np.flatnonzero(heads)
    if not head.size:
        return
    # a folio ends at a page that is no tail, at the next head (a page flagged head and tail,
    # as a damaged or hostile snapshot may say, starts a folio: so the folios never overlap
    # and their tails add up to at most the block's pages — linear, not quadratic) ...
    starts = ~bit(KPF_COMPOUND_TAIL).ravel() | heads
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


def unit_code(kind: int, mods: int = 0, order: int = 0) -> int:
    return kind | mods << 4 | order << _ORDER_SHIFT


def unit_codes(layout: Layout) -> np.ndarray:
    """Every frame's unit code (int64), as :func:`unit_code` packs one."""
    return (
        layout.kind.astype(np.int64)
        | layout.mods.astype(np.int64) << 4
        | layout.order.astype(np.int64) << _ORDER_SHIFT
    )


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
