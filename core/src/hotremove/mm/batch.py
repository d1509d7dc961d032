"""The batched path: runs of ordinary page-cache pages moved with a few array operations.

A ``migrate_pages_batch`` of 512 pages whose strategy is the core's own
``buffer_migrate_folio`` (or ``_norefs``, or ``migrate_folio`` for buffer-less page cache, or
``filemap_migrate_folio`` for pages whose ->private is a filesystem's folio state)
and which nothing holds — not locked, no writeback, no extra reference, no locked (or, for
``_norefs``, referenced) buffer, not mapped, not compound — needs no decisions per page: the
outcome of the kernel's steps is known in advance. So instead of ~40 Python operations per
page the engine does, for a whole run of such pages:

* ``alloc_pages_bulk`` the destinations (the same frames, in the same order, as one-by-one
  ``alloc_page`` calls would give);
* one gather/scatter per ``struct page`` field: ``folio_migrate_mapping`` (index, mapping,
  page-cache reference, PG_dirty), ``folio_attach_private`` (->private and its reference: a
  buffer ring's head, or a folio state moved from the old frame's entry to the new one's),
  ``folio_migrate_flags`` (the same mask as :data:`hotremove.mm.migrate.MIGRATED_FLAGS`, PG_active
  before PG_unevictable), then PG_lru and the allocation reference dropped;
* one scatter of ``b_page`` over the buffer_head slab (``folio_set_bh`` for every buffer);
* one fancy-indexed memcpy of the frames, and ``free_pages_bulk`` of the old frames.

The fallback (mm/migrate.c ``fallback_migrate_folio``, Linux 6.1/6.12; a strategy declared
with :func:`hotremove.mm.migrate.declare_fallback`, generic_writeback's) takes the same path for
its **clean** pages whose buffers fs/buffer.c ``try_to_free_buffers`` frees — no buffer with a
user (``b_count``), BH_Dirty or BH_Lock, and on a journalled filesystem no journal head, so
that jbd2's ``->release_folio`` is ``try_to_free_buffers`` too: ``filemap_release_folio`` is
done in bulk (:meth:`BatchMover.free_buffers`: every buffer detached, ->private, PG_private
and its reference dropped, ``nr_buffers_freed`` counted), then the page moves like a page
without buffers (``migrate_folio``: a copy). Its dirty pages (``writeout()``: WB_SYNC_NONE,
-EAGAIN, moved clean by a later pass; -EBUSY outside SYNC) stay on the per-page path.

Buffer and page locks are taken and released inside the kernel's steps with nobody else
running, so their net effect is nil and they are not replayed. Pages that do not qualify —
and every page when a lock tracker (lockdep, the explorer), an ``enomem_after`` fault or a
per-page hook is active — take the per-page path, in order, so a batch allocates exactly the
frames the per-page path would (a test compares the two paths' machines array by array).
With ``checks`` on, the per-page checks run vectorised: the destination frames are poisoned
before the copy, then bytes, PG_dirty/PG_mappedtodisk and every ``b_page`` are compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import FunctionType
from typing import TYPE_CHECKING

import numpy as np

from hotremove.mm.migrate import (
    BUFFER_MIGRATE_FOLIO,
    BUFFER_MIGRATE_FOLIO_NOREFS,
    FILEMAP_MIGRATE_FOLIO,
    MIGRATE_FOLIO,
    MIGRATED_FLAGS,
    MigrateStrategy,
    is_fallback,
)
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import BH_JBD, BH_Dirty, BH_JBDDirty, BH_Lock
from hotremove.model.page import (
    PG_UNMOVABLE,
    PG_active,
    PG_anon,
    PG_dirty,
    PG_head,
    PG_locked,
    PG_lru,
    PG_mappedtodisk,
    PG_private,
    PG_swapbacked,
    PG_swapcache,
    PG_tail,
    PG_unevictable,
    PG_writeback,
)
from hotremove.sim.checks import POISON, CheckFailure

if TYPE_CHECKING:
    from hotremove.mm.migrate import MigrateControl
    from hotremove.mm.result import AopsStats, OfflineResult
    from hotremove.model.memory import PhysicalMemory

#: How the batched path treats each of the core's strategies (others: per page), by the
#: function they run (a cited copy — :func:`hotremove.mm.migrate.cite` — runs the same one);
#: FALLBACK is a strategy declared ``fallback_migrate_folio``
#: (:func:`hotremove.mm.migrate.declare_fallback`); FILEMAP moves a folio state whole (a page
#: with buffers goes per page).
PLAIN, BUFFERS, BUFFERS_NOREFS, FALLBACK, FILEMAP = 1, 2, 3, 4, 5
KIND: dict[FunctionType, int] = {
    MIGRATE_FOLIO.migrate_folio: PLAIN,
    BUFFER_MIGRATE_FOLIO.migrate_folio: BUFFERS,
    BUFFER_MIGRATE_FOLIO_NOREFS.migrate_folio: BUFFERS_NOREFS,
    FILEMAP_MIGRATE_FOLIO.migrate_folio: FILEMAP,
}


def kind_of(strategy: object) -> int:
    """The batched path's kind of ``strategy`` (0: per page only)."""
    func = getattr(strategy, "migrate_folio", None)
    if isinstance(func, FunctionType) and func in KIND:
        return KIND[func]
    return FALLBACK if is_fallback(strategy) else 0


#: A page with any of these takes the per-page path (it needs a decision or a wait).
NOT_BATCHED = PG_locked | PG_writeback | PG_head | PG_tail | PG_swapcache | PG_anon | PG_UNMOVABLE
#: What the new page keeps of the old page's flags (folio_migrate_mapping + _flags).
KEPT = MIGRATED_FLAGS | PG_anon | PG_swapbacked | PG_private
#: What the per-page steps take off the old page before it is freed: isolation (PG_lru),
#: ``folio_detach_private`` (PG_private), and what ``folio_migrate_mapping`` /
#: ``folio_migrate_flags`` move to the new one (PG_dirty, PG_active, PG_unevictable).
MOVED_OFF_SRC = PG_lru | PG_private | PG_active | PG_unevictable | PG_dirty

#: A buffer with any of these keeps ``try_to_free_buffers`` from freeing its page's buffers
#: (BH_Dirty, BH_Lock: ``buffer_busy``), or makes jbd2's ``->release_folio`` do more than
#: that (a journal head, a buffer the running transaction owns): the page goes per page.
NOT_FREEABLE = BH_Dirty | BH_Lock | BH_JBD | BH_JBDDirty

#: Runs shorter than this go page by page: below it the array set-up costs more.
MIN_RUN = 8


def runs(mask: np.ndarray) -> Iterator[tuple[int, int, bool]]:
    """Maximal runs ``(start, end, value)`` of a boolean array, in order."""
    if not len(mask):
        return
    edges = np.flatnonzero(np.diff(mask.view(np.int8))) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), len(mask)]
    for start, end in zip(starts, ends, strict=True):
        yield start, end, bool(mask[start])


class BatchMover:
    """The batched path of one offline (see module doc)."""

    def __init__(
        self, memory: PhysicalMemory, mc: MigrateControl, moved: np.ndarray, result: OfflineResult
    ) -> None:
        # what it shares with the per-page path of one offline (not the Offliner itself: no
        # reference cycle keeps a machine's frames alive after the run)
        self.memory = memory
        self.mm = memory.pages
        self.pool = memory.bh_pool
        self.mc = mc
        self.moved = moved
        self.result = result
        #: mapping_id → (kind, stats) for mappings whose strategy the batch path knows
        self.kinds: dict[int, tuple[int, AopsStats]] = {}
        self._kind_table = np.zeros(0, np.int8)  # mapping_id → kind (0: per page)
        self._rings: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64),) * 2

    def learn(self, mapping: object, strategy: MigrateStrategy, stats: AopsStats) -> None:
        """Called once per address_space when its strategy is resolved."""
        kind = kind_of(strategy)
        if kind and isinstance(mapping, AddressSpace):
            mid = self.mm.mapping_index(mapping)
            self.kinds[mid] = (kind, stats)
            if mid < len(self._kind_table):  # learnt after the table was made (a later block)
                self._kind_table[mid] = kind

    def kind_table(self) -> np.ndarray:
        """mapping_id → kind, for every mapping registered so far."""
        if len(self._kind_table) != len(self.mm.mappings):
            table = np.zeros(len(self.mm.mappings), np.int8)
            for mid, (kind, _) in self.kinds.items():
                table[mid] = kind
            self._kind_table = table
        return self._kind_table

    # -- which pages qualify ---------------------------------------------------------------
    def eligible(self, pfns: np.ndarray) -> np.ndarray:
        """Which pages of ``pfns`` the batched path may move now (see module doc)."""
        mm = self.mm
        kinds = self.kind_table()[mm.mapping_id[pfns]]
        flags = mm.flags[pfns]
        has_private = (flags & PG_private) != 0
        heads = mm.private_bh[pfns]
        ok = (
            (kinds > 0)
            & ((flags & NOT_BATCHED) == 0)
            & (mm.mapcount[pfns] == 0)
            & (mm.order[pfns] == 0)
            # unisolated, nobody else holds it: the cache's reference (+ ->private's)
            & (mm.refcount[pfns] == 1 + has_private)
            # ->private is a buffer ring, or nothing — or, for filemap_migrate_folio, a folio
            # state (never a ring: it would move without its buffers' b_page)
            & np.where(kinds == FILEMAP, ~(heads >= 0), has_private == (heads >= 0))
            & ~(has_private & (kinds == PLAIN))  # migrate_folio: no private data to move
            # fallback_migrate_folio: a dirty page is written out (or refused), per page
            & ~((kinds == FALLBACK) & ((flags & PG_dirty) != 0))
        )
        pool = self.pool
        members, owners = pool.rings(np.where(ok, heads, -1))
        state, count, kind = pool.b_state[members], pool.b_count[members], kinds[owners]
        busy = (state & BH_Lock) != 0
        busy |= (count != 0) & (kind == BUFFERS_NOREFS)
        # fallback_migrate_folio: try_to_free_buffers must succeed (no user, clean, unlocked)
        busy |= (kind == FALLBACK) & ((count != 0) | ((state & NOT_FREEABLE) != 0))
        ok[owners[busy]] = False
        self._rings = (members, owners)  # for move(): one ring walk per run, not two
        return ok

    def rings_of(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The buffers of pages ``start:end`` of the last :meth:`eligible` call (all of them
        qualified), with positions relative to ``start``."""
        members, owners = self._rings
        mine = (owners >= start) & (owners < end)
        return members[mine], owners[mine] - start

    # -- moving a run ----------------------------------------------------------------------
    def move(
        self,
        srcs: np.ndarray,
        checks: bool,
        rings: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> int:
        """Move the qualifying pages ``srcs`` (in order); returns how many moved (fewer when
        the online memory ran out: the rest is the per-page path's -ENOMEM). ``rings``: their
        buffers as :meth:`rings_of` gives them (else walked here)."""
        memory, mm, pool = self.memory, self.mm, self.pool
        dsts = memory.alloc_pages_bulk(len(srcs))
        srcs = srcs[: len(dsts)]
        if not len(dsts):
            return 0
        mc = self.mc
        if rings is None:
            members, owners = pool.rings(mm.private_bh[srcs])
        else:
            members, owners = rings
            if len(srcs) < len(owners) and len(owners) and owners.max() >= len(srcs):
                kept = owners < len(srcs)
                members, owners = members[kept], owners[kept]
        flags = mm.flags[srcs]
        release = (self.kind_table()[mm.mapping_id[srcs]] == FALLBACK) & ((flags & PG_private) != 0)
        if release.any():  # fallback_migrate_folio: buffers freed, then a plain migrate_folio
            members, owners = self.free_buffers(srcs, release, members, owners)
            flags = mm.flags[srcs]
        private = (flags & PG_private) != 0
        buffered = mm.private_bh[srcs] >= 0  # ->private is buffers (else a folio state, or none)
        self.move_folio_states(srcs, dsts, private & ~buffered)
        active = flags & PG_active
        new_flags = (flags & KEPT) | active | PG_lru
        new_flags |= np.where(active != 0, 0, flags & PG_unevictable).astype(np.uint32)
        mm.flags[dsts] = new_flags
        mm.refcount[dsts] = mm.refcount[srcs]  # cache (+ private): the allocation ref is gone
        mm.index[dsts] = mm.index[srcs]
        mm.private_bh[dsts] = mm.private_bh[srcs]
        self.set_bh_pages(members, dsts[owners])
        if checks:
            if consecutive(dsts):
                mc.frames[dsts[0] : dsts[0] + len(dsts)] = POISON
            else:
                mc.frames[dsts] = POISON
        self.copy_frames(dsts, srcs)
        mids = mm.mapping_id[srcs]
        mm.mapping_id[dsts] = mids
        # folio_migrate_mapping's xas_store, and the per-a_ops counts, per address_space
        for mid in np.unique(mids).tolist():
            mine = mids == mid
            mm.mappings[mid].i_pages.store_many(mm.index[dsts[mine]], dsts[mine], mm)
            stats = self.kinds[mid][1]
            stats.migrated += int(mine.sum())
            stats.rebound += int(buffered[mine].sum())
        if checks:  # before the free: a freed frame in an isolated block reads as zeros
            self.result.check_failures.extend(
                self.verify(srcs, dsts, flags, new_flags, members, owners)
            )
        # what the per-page steps leave on the old page for the free-time check: isolated
        # (PG_lru), ->private detached, PG_active / PG_unevictable / PG_dirty moved, and a
        # file page's ->mapping cleared by move_to_new_folio
        mm.flags[srcs] = flags & ~np.uint32(MOVED_OFF_SRC)
        mm.mapping_id[srcs] = np.where(flags & PG_anon != 0, mids, 0)
        mm.refcount[srcs] = 0
        memory.free_pages_bulk(srcs)
        nr, nr_rebound = len(srcs), int(buffered.sum())
        mc.clock.cpu_seconds += mc.copy_seconds * nr
        mc.vmstat.nr_rebound += nr_rebound
        mc.vmstat.pgmigrate_success += nr
        self.moved[srcs] = True
        return nr

    def free_buffers(
        self, srcs: np.ndarray, release: np.ndarray, members: np.ndarray, owners: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``filemap_release_folio`` for the pages ``srcs[release]`` of a
        ``fallback_migrate_folio`` (mm/migrate.c, Linux 6.1/6.12: ``if
        (folio_test_private(src) && !filemap_release_folio(src, GFP_KERNEL)) return mode ==
        MIGRATE_SYNC ? -EAGAIN : -EBUSY;``), all of which succeed — :meth:`eligible` let
        through only rings that fs/buffer.c ``try_to_free_buffers`` frees (no ``b_count``, no
        BH_Dirty or BH_Lock: ``buffer_busy``) and, on a journalled filesystem, that hold no
        journal head (jbd2's ``->release_folio`` is then just ``try_to_free_buffers``).
        ``drop_buffers`` for each: every buffer is detached (``b_page`` = -1: freed), then
        ``folio_detach_private`` drops ->private, PG_private and its page reference. The
        pages are clean, so ``try_to_free_buffers`` has no PG_dirty to clear. Returns the
        buffers of the other pages (``members``, ``owners`` without the freed ones)."""
        mm = self.mm
        freed = release[owners]
        self.pool.b_page[members[freed]] = -1
        pfns = srcs[release]
        mm.private_bh[pfns] = -1
        mm.flags[pfns] &= np.uint32(~PG_private & 0xFFFFFFFF)
        mm.refcount[pfns] -= 1
        self.mc.vmstat.nr_buffers_freed += len(pfns)
        return members[~freed], owners[~freed]

    def move_folio_states(self, srcs: np.ndarray, dsts: np.ndarray, which: np.ndarray) -> None:
        """``folio_attach_private(dst, folio_detach_private(src))`` for the pages ``which`` whose
        ->private is a folio state: the object itself goes to the new frame's entry (PG_private
        and the reference follow with the flags and the refcount)."""
        table = self.mm.private
        for src, dst in zip(srcs[which].tolist(), dsts[which].tolist(), strict=True):
            table[dst] = table.pop(src)

    def set_bh_pages(self, members: np.ndarray, pfns: np.ndarray) -> None:
        """``folio_set_bh`` for every buffer: same offset, new page."""
        self.pool.b_page[members] = pfns

    def copy_frames(self, dsts: np.ndarray, srcs: np.ndarray) -> None:
        """``folio_copy`` for the run: one memcpy when both sides are consecutive frames (a
        region filled in order, destinations popped in order), else one gather/scatter."""
        frames = self.mc.frames
        if consecutive(dsts):
            frames[dsts[0] : dsts[0] + len(dsts)] = frame_rows(frames, srcs)
        else:
            frames[dsts] = frame_rows(frames, srcs)

    def verify(
        self,
        srcs: np.ndarray,
        dsts: np.ndarray,
        old_flags: np.ndarray,
        new_flags: np.ndarray,
        members: np.ndarray,
        owners: np.ndarray,
    ) -> list[CheckFailure]:
        """The per-page checks (:class:`hotremove.sim.checks.PageCheck`), for a whole run."""
        frames = self.mc.frames
        failures: list[CheckFailure] = []
        words = frames.view(np.uint64)  # 512 comparisons a frame, not 4096
        differs = (frame_rows(words, dsts) != frame_rows(words, srcs)).any(axis=1)
        for i in np.flatnonzero(differs).tolist():
            failures.append(CheckFailure(int(srcs[i]), "copy", "bytes differ after the copy"))
        lost = ((old_flags ^ new_flags) & PG_mappedtodisk) | (old_flags & ~new_flags & PG_dirty)
        for i in np.flatnonzero(lost).tolist():
            failures.append(
                CheckFailure(
                    int(srcs[i]), "flags", f"flags: {old_flags[i]:#x} -> {new_flags[i]:#x}"
                )
            )
        astray = self.pool.b_page[members] != dsts[owners]
        for i in np.flatnonzero(astray).tolist():
            failures.append(
                CheckFailure(int(srcs[owners[i]]), "bh_page", "buffer not on the new page")
            )
        table = self.mm.private
        states = (new_flags & PG_private != 0) & (self.mm.private_bh[dsts] < 0)
        for i in np.flatnonzero(states).tolist():
            if int(dsts[i]) not in table or int(srcs[i]) in table:
                failures.append(
                    CheckFailure(int(srcs[i]), "private", "folio state not on the new page")
                )
        return failures


def consecutive(pfns: np.ndarray) -> bool:
    """Whether ``pfns`` are consecutive frames in increasing order (a slice, no gather)."""
    n = len(pfns)
    return n > 0 and pfns[-1] - pfns[0] == n - 1 and bool((np.diff(pfns) == 1).all())


def frame_rows(frames: np.ndarray, pfns: np.ndarray) -> np.ndarray:
    """``frames[pfns]``: a view when the frames are consecutive, else a gathered copy."""
    if consecutive(pfns):
        return frames[pfns[0] : pfns[0] + len(pfns)]
    return frames[pfns]


def pieces(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """The batch cut into runs: ``(start, end, batched)``, in order; runs of qualifying
    pages shorter than :data:`MIN_RUN` go page by page."""
    return [(start, end, ok and end - start >= MIN_RUN) for start, end, ok in runs(mask)]
