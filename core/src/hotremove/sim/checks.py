"""Invariants: the seed's own per-page debug checks, and whole-run checks at the end.

Per page (``PageCheck``, on in tests, optional in benchmarks): the new frame is poisoned with
0xdeadbeef before the copy (the seed's ``remap_onepage``), then every byte must equal the old
frame, PG_dirty/PG_mappedtodisk must have survived (unless the strategy wrote the page out),
every buffer must point at the new page with its own state unchanged.
At the end (``check_machine``): no page or buffer lock held, no spinlock held, references
balanced for every cached page, no page of the removed range in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotremove.model.address_space import AnonVma, gather_trees
from hotremove.model.buffer_head import BH_Lock, page_buffers
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import (
    Page,
    PG_dirty,
    PG_head,
    PG_locked,
    PG_mappedtodisk,
    PG_private,
    PG_swapcache,
    PG_tail,
    page_has_buffers,
)

POISON = np.frombuffer(np.uint32(0xDEADBEEF).tobytes() * 1024, dtype=np.uint8)


@dataclass(frozen=True)
class CheckFailure:
    pfn: int
    check: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"pfn": self.pfn, "check": self.check, "message": self.message}


class PageCheck:
    """Snapshot of ``src`` before a migration attempt, checked against ``dst`` after it."""

    __slots__ = ("bh_states", "flags", "folio_state", "src")

    def __init__(self, frames: np.ndarray, src: Page, dst: Page) -> None:
        frames[dst.pfn : dst.pfn + (1 << src.order)] = POISON
        self.src = src
        self.flags = src.flags
        self.bh_states = (
            [(bh, bh.b_state) for bh in page_buffers(src)] if src.flags & PG_private else []
        )
        #: a filesystem's folio state on src (->private that is not buffers), or None
        self.folio_state = (
            src.private if src.flags & PG_private and not page_has_buffers(src) else None
        )

    def verify(self, frames: np.ndarray, dst: Page, wrote_back: bool) -> list[CheckFailure]:
        failures: list[CheckFailure] = []
        pfn = self.src.pfn
        nr = 1 << self.src.order
        new, old = frames[dst.pfn : dst.pfn + nr], frames[pfn : pfn + nr]
        if not np.array_equal(new, old):
            bad = int(np.flatnonzero((new != old).ravel())[0])
            failures.append(CheckFailure(pfn, "copy", f"byte {bad} differs after the copy"))
        changed = (self.flags ^ dst.flags) & PG_mappedtodisk
        lost_dirty = self.flags & PG_dirty and not dst.flags & PG_dirty and not wrote_back
        if changed or lost_dirty:
            failures.append(CheckFailure(pfn, "flags", f"flags: {self.flags:#x} -> {dst.flags:#x}"))
        moved = self.folio_state
        if (
            moved is not None
            and dst.flags & PG_private
            and (dst.private is not moved or self.src.flags & PG_private)
        ):
            failures.append(
                CheckFailure(pfn, "private", f"{self.folio_state!r} did not move to {dst!r}")
            )
        if dst.flags & PG_private:
            for bh, state in self.bh_states:
                if bh.b_page != dst:
                    failures.append(CheckFailure(pfn, "bh_page", f"{bh!r} not on new page"))
                elif not wrote_back and (bh.b_state & ~BH_Lock) != (state & ~BH_Lock):
                    failures.append(CheckFailure(pfn, "bh_state", f"{bh!r} state was {state:#x}"))
        return failures


def _check_page_caches(machine: Machine, failures: list[CheckFailure]) -> np.ndarray:
    """Every file's tree: entries point at pages of this mapping at that index, no buffer is
    left locked (unless its holder is registered), every buffer points at its page. One set
    of array operations for all files (a machine holds thousands); failures come file by
    file as a loop over the files would give them. Returns the cached frames (their
    references are checked with the others)."""
    memory = machine.memory
    mm, pool = memory.pages, memory.bh_pool
    mappings = machine.mappings
    which, indices, pfns = gather_trees([m.i_pages for m in mappings])
    ids = np.fromiter((mm.mapping_index(m) for m in mappings), np.int64, len(mappings))
    found: list[tuple[int, int, int, CheckFailure]] = []  # (file, kind, order, failure)
    stale = (mm.index[pfns] != indices) | (mm.mapping_id[pfns] != ids[which])
    for i in np.flatnonzero(stale).tolist():
        found.append((int(which[i]), 0, i, CheckFailure(int(pfns[i]), "mapping", STALE)))
    has_buffers = mm.flags[pfns] & PG_private != 0
    members, owners = pool.rings(np.where(has_buffers, mm.private_bh[pfns], -1))
    for i in np.flatnonzero(pool.b_state[members] & BH_Lock).tolist():
        bh = pool.handle(int(members[i]))
        if bh not in machine.waiters:
            pfn = int(pfns[owners[i]])
            failure = CheckFailure(pfn, "bh_lock", f"{bh!r} still locked")
            found.append((int(which[owners[i]]), 1, i, failure))
    for i in np.flatnonzero(pool.b_page[members] != pfns[owners]).tolist():
        bh = pool.handle(int(members[i]))
        failure = CheckFailure(int(pfns[owners[i]]), "bh_page", f"{bh!r} points away")
        found.append((int(which[owners[i]]), 2, i, failure))
    found.sort(key=lambda entry: entry[:3])
    failures.extend(entry[3] for entry in found)
    return pfns


STALE = "page tree entry stale"


def compound_head(memory: PhysicalMemory, pfn: int) -> Page:
    """The head page of the folio ``pfn`` belongs to (folios are naturally aligned)."""
    page = memory.pages[pfn]
    if not page.flags & PG_tail:
        return page
    for order in range(1, MAX_ORDER + 1):
        head = memory.pages[pfn & ~((1 << order) - 1)]
        if head.flags & PG_head and head.pfn + (1 << head.order) > pfn:
            return head
    return page


MAX_ORDER = 18  # up to 1 GiB folios (PUD-sized); aligned heads are found in O(MAX_ORDER)


def check_machine(machine: Machine, removed: list[int]) -> list[CheckFailure]:
    """Whole-machine invariants after a run (locks, references, the removed range). A lock
    another party legitimately holds (I/O in flight, another task) is registered in
    ``machine.waiters`` and is not a leak. The page-cache part runs on mem_map and the
    buffer_head slab as arrays (it covers every cached page)."""
    failures: list[CheckFailure] = []
    if machine.task.held_spinlocks:
        names = ", ".join(lock.name for lock in machine.task.held_spinlocks)
        failures.append(CheckFailure(-1, "spinlock", f"still held: {names}"))
    pages: list[Page] = []
    cached = [_check_page_caches(machine, failures)]
    memory = machine.memory
    for vma in machine.anon_vmas:
        for vpn, pfn in vma.ptes.items():
            head = compound_head(memory, pfn)
            if pfn < 0 or memory.is_free(pfn) or head.mapping is not vma:
                failures.append(CheckFailure(pfn, "pte", f"pte {vpn} maps a wrong frame"))
            elif head.pfn == pfn:
                pages.append(head)
    for entry, page in machine.swap_cache.i_pages.items():
        if not page.flags & PG_swapcache or page.private != entry:
            failures.append(CheckFailure(page.pfn, "swap_cache", f"entry {entry} stale"))
    mm = memory.pages
    pfns = np.concatenate([*cached, np.asarray([p.pfn for p in pages], np.int64)])
    flags = mm.flags[pfns]
    want = mm.mapcount[pfns] + (flags & PG_private != 0) + (flags & PG_swapcache != 0)
    in_a_cache = np.asarray([m is not None and type(m) is not AnonVma for m in mm.mappings])
    want += in_a_cache[mm.mapping_id[pfns]]  # the page cache's (or swap cache's) reference
    if machine.pins:
        pinned = np.zeros(len(pfns), np.int32)
        where = {pfn: i for i, pfn in enumerate(pfns.tolist())}
        for page, n in machine.pins.items():
            if page.pfn in where:
                pinned[where[page.pfn]] += n
        want += pinned
    for i in np.flatnonzero(flags & PG_locked).tolist():
        failures.append(CheckFailure(int(pfns[i]), "page_lock", "page still locked"))
    refcount = mm.refcount[pfns]
    for i in np.flatnonzero(refcount != want).tolist():
        failures.append(
            CheckFailure(int(pfns[i]), "refcount", f"refcount {refcount[i]}, expected {want[i]}")
        )
    for block in removed:
        b = memory.blocks[block]
        if memory.block_state[block] == "offline":
            free = memory.free_map[b.start_pfn : b.end_pfn]
            in_use = b.start_pfn + np.flatnonzero(free == 0)
            for pfn in in_use[:10].tolist():
                failures.append(CheckFailure(pfn, "offline", "frame in use in offline block"))
    return failures
