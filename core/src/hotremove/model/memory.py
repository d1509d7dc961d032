"""Physical memory: page frames with real bytes, memory blocks, and the frame allocator.

All frames live in one contiguous numpy buffer (``frames[pfn]`` is a 4096-byte row), so a
page copy is one memcpy. Memory is cut into memory blocks (the unit of hot-remove, 128 MiB on
x86_64); a block is ``online``, ``isolated`` (MIGRATE_ISOLATE: the allocator no longer hands
out its frames) or ``offline``. Which free frame the allocator hands out next is the buddy
allocator's (:mod:`hotremove.model.buddy`).
"""

from __future__ import annotations

import mmap
import sys
from dataclasses import dataclass

import numpy as np

from hotremove.model import hostmem
from hotremove.model.bad_page import BadPage, free_page_is_bad
from hotremove.model.buddy import FreeArea
from hotremove.model.buffer_head import BufferHeadPool
from hotremove.model.page import PAGE_SIZE, MemMap, Page

ONLINE = "online"
ISOLATED = "isolated"
OFFLINE = "offline"


@dataclass(frozen=True)
class MemoryBlock:
    """``/sys/devices/system/memory/memoryN``: frames ``start_pfn .. end_pfn - 1``."""

    index: int
    start_pfn: int
    end_pfn: int

    @property
    def nr_pages(self) -> int:
        return self.end_pfn - self.start_pfn


#: madvise(2) advice: fault in, writable, without writing (Linux 5.14+)
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)

#: MAP_NORESERVE on Linux (the mmap module names it only from Python 3.13)
_NORESERVE = 0x4000 if sys.platform.startswith("linux") else 0


def _frames(nr_pages: int) -> tuple[mmap.mmap, np.ndarray]:
    """Zeroed frames, backed by the host only once touched: a frame costs host memory when
    the workload fills it or a migration copies into it, and gives it back when it dies
    (:meth:`PhysicalMemory.release`). No ``MADV_HUGEPAGE``: where the host's THP defrag
    setting is ``madvise`` (Debian's default) it makes every fault compact memory, measured
    4–5× slower for filling 1 GiB of page cache on a busy host."""
    # MAP_NORESERVE: simulated RAM larger than this machine's is fine as long as what is
    # used fits (the memory guard's call); without it the kernel's overcommit heuristic
    # refuses one mapping larger than RAM + swap
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", _NORESERVE)
    buf = mmap.mmap(-1, nr_pages * PAGE_SIZE, flags=flags)
    return buf, np.frombuffer(buf, dtype=np.uint8).reshape(nr_pages, PAGE_SIZE)


def pfn_runs(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of consecutive frames among ``pfns`` (any order,
    repeats allowed): frame ranges ``starts[i] .. ends[i] - 1``."""
    steps = np.diff(pfns)
    if (steps <= 0).any():
        pfns = np.unique(pfns)
        steps = np.diff(pfns)
    breaks = np.flatnonzero(steps != 1) + 1
    starts = pfns[np.concatenate([[0], breaks])]
    ends = pfns[np.concatenate([breaks - 1, [len(pfns) - 1]])] + 1
    return starts, ends


class PhysicalMemory:
    """The machine's RAM: ``nr_pages`` frames, ``mem_map`` (a struct page per frame, see
    :class:`~hotremove.model.page.MemMap`), the buffer_head slab and the zone's buddy free
    lists (:class:`~hotremove.model.buddy.FreeArea`: frames of online blocks only).
    """

    def __init__(self, size: int, block_size: int) -> None:
        if size <= 0 or block_size <= 0 or size % block_size or block_size % PAGE_SIZE:
            raise ValueError(f"memory size {size} must be a positive multiple of {block_size}")
        self.nr_pages = size // PAGE_SIZE
        self.pages_per_block = block_size // PAGE_SIZE
        self._frames_buf, self.frames = _frames(self.nr_pages)
        #: frames freed in isolated blocks, not yet given back to the host (see release)
        self._dead: list[int] = []
        self._populate = sys.platform.startswith("linux")  # see populate
        self.bh_pool = BufferHeadPool(self.nr_pages)
        self.pages = MemMap(self.nr_pages, self.bh_pool)
        self.bh_pool.memmap = self.pages
        self.blocks = [
            MemoryBlock(i, start, start + self.pages_per_block)
            for i, start in enumerate(range(0, self.nr_pages, self.pages_per_block))
        ]
        self.block_state = [ONLINE] * len(self.blocks)
        self._free = bytearray(b"\x01") * self.nr_pages
        #: the same bytes as an array (1: free), for the vectorised callers
        self.free_map = np.frombuffer(self._free, dtype=np.uint8)
        self._nr_free = [b.nr_pages for b in self.blocks]
        self.free_area = FreeArea(self.nr_pages, self.pages_per_block)
        #: pages the kernel's free-time check refused (reported, never freed)
        self.bad_pages: list[BadPage] = []

    @property
    def size(self) -> int:
        return self.nr_pages * PAGE_SIZE

    @property
    def metadata_nbytes(self) -> int:
        """Bytes of mem_map, the buffer_head slab and the allocator's lists."""
        lists = self.free_area.nbytes
        return self.pages.nbytes + self.bh_pool.nbytes + lists + len(self._free)

    def block_of(self, pfn: int) -> int:
        return pfn // self.pages_per_block

    def is_free(self, pfn: int) -> bool:
        return bool(self._free[pfn])

    def nr_free(self, block: int | None = None) -> int:
        return sum(self._nr_free) if block is None else self._nr_free[block]

    def frame(self, pfn: int) -> np.ndarray:
        """The 4096 real bytes of frame ``pfn`` (a writable view)."""
        return self.frames[pfn]

    def alloc_page(self) -> Page | None:
        """Allocate a frame from an online block (never an isolated or offline one), with one
        reference held by the caller, in the buddy allocator's order. ``None`` is the
        simulator's -ENOMEM."""
        pfn = self._area().rmqueue(0)
        return self._take(pfn) if pfn >= 0 else None

    def alloc_pages_bulk(self, nr: int) -> np.ndarray:
        """``alloc_pages_bulk``: up to ``nr`` frames, in exactly the order ``nr`` calls of
        :meth:`alloc_page` would return them, each with one reference. Fewer means the
        online blocks ran out (the caller's -ENOMEM for the rest)."""
        pfns = self._area().rmqueue_bulk(nr)
        if len(pfns):
            self.free_map[pfns] = 0
            blocks = pfns // self.pages_per_block
            first, last = int(blocks.min()), int(blocks.max())
            if first == last:
                self._nr_free[first] -= len(pfns)
            else:
                for block, n in zip(*np.unique(blocks, return_counts=True), strict=True):
                    self._nr_free[int(block)] -= int(n)
            self.pages.refcount[pfns] = 1
            self.populate(pfns)
        return pfns

    def _area(self) -> FreeArea:
        """The free lists, rebuilt first if the builder placed pages since (see
        :mod:`hotremove.model.buddy`)."""
        area = self.free_area
        if area.stale:
            online = np.repeat(self.block_state_array() == 0, self.pages_per_block)
            area.rebuild((self.free_map != 0) & online)
        return area

    def alloc_contig(self, order: int) -> Page | None:
        """A naturally aligned run of ``1 << order`` free frames in online blocks (the
        buddy allocator's smallest fitting chunk), returned as a compound folio (head with
        PG_head and ``order``, tails with PG_tail)."""
        if order > self.free_area.max_order:
            return None
        pfn = self._area().rmqueue(order)
        return self._take_compound(pfn, order) if pfn >= 0 else None

    def alloc_compound_at(self, pfn: int, order: int) -> Page:
        """The workload's placement of a huge page at an aligned, free, online range."""
        nr = 1 << order
        if pfn % nr or not all(self._free[pfn : pfn + nr]):
            raise ValueError(f"frames {pfn:#x}+{nr} are not an aligned free range")
        if self.block_state[self.block_of(pfn)] != ONLINE:
            raise ValueError(f"frame {pfn:#x} is not online")
        self.free_area.stale = True
        return self._take_compound(pfn, order)

    def _take_compound(self, start: int, order: int) -> Page:
        from hotremove.model.page import PG_head, PG_tail

        head = self._take(start)
        head.order = order
        head.flags |= PG_head
        for pfn in range(start + 1, start + (1 << order)):
            self._take(pfn)
            tail = self.pages[pfn]
            tail._refcount = 0  # tails carry no references: the head holds the folio's
            tail.flags = PG_tail
        return head

    def alloc_page_at(self, pfn: int) -> Page:
        """Allocate a specific free frame (the workload's placement decides where pages live)."""
        if not self._free[pfn] or self.block_state[self.block_of(pfn)] != ONLINE:
            raise ValueError(f"frame {pfn:#x} is not free and online")
        self.free_area.stale = True
        return self._take(pfn)

    def alloc_pages_at(self, pfns: np.ndarray) -> None:
        """:meth:`alloc_page_at` for many frames at once (the workload builder)."""
        free = self.free_map
        blocks = pfns // self.pages_per_block
        if len(pfns) and (
            not free[pfns].all()
            or len(np.unique(pfns)) != len(pfns)
            or any(self.block_state[int(b)] != ONLINE for b in np.unique(blocks))
        ):
            raise ValueError("frames are not free and online")
        self.free_area.stale = True
        free[pfns] = 0
        for block, n in zip(*np.unique(blocks, return_counts=True), strict=True):
            self._nr_free[int(block)] -= int(n)
        self.pages.refcount[pfns] = 1
        self.populate(pfns)  # the builder fills them next

    def _take(self, pfn: int) -> Page:
        self._free[pfn] = 0
        self._nr_free[pfn // self.pages_per_block] -= 1
        page = Page(self.pages, pfn)
        page._refcount = 1
        return page

    def free_page_is_bad(self, pfns: np.ndarray) -> np.ndarray:
        """The kernel's free-time check (:func:`hotremove.model.bad_page.free_page_is_bad`)
        for frames about to be freed; the bad ones are recorded in :attr:`bad_pages`."""
        return free_page_is_bad(self.pages, pfns, self.bad_pages)

    def free_page(self, page: Page) -> None:
        """Return a frame (or a whole compound folio) whose last reference is gone. A bad
        page (:meth:`free_page_is_bad`) is reported and not freed, as the kernel leaks it."""
        if page._refcount != 0:
            raise AssertionError(f"freeing a page that still has references: {page!r}")
        pfn = page.pfn
        if self.free_page_is_bad(np.array([pfn])).any():
            return
        order = page.order
        if order:
            for tail in range(pfn + 1, pfn + (1 << order)):
                self._free_frame(tail)
            page.order = 0
        self._free_frame(pfn)

    def _free_frame(self, pfn: int) -> None:
        if self._free[pfn]:
            raise AssertionError(f"double free of frame {pfn:#x}")
        mm = self.pages
        mm._flags[pfn] = 0
        mm._mapping_id[pfn] = 0
        if mm._private_bh[pfn] >= 0:
            mm._private_bh[pfn] = -1
        elif mm.private:
            mm.private.pop(pfn, None)
        mm._index[pfn] = 0
        mm._mapcount[pfn] = 0
        block = pfn // self.pages_per_block
        self._free[pfn] = 1
        self._nr_free[block] += 1
        if self.block_state[block] != ONLINE:
            self._dead.append(pfn)  # given back by release_dead, once no copy reads it
        elif not self.free_area.stale:
            self.free_area.free_one(pfn)

    def free_pages_bulk(self, pfns: np.ndarray) -> None:
        """:meth:`free_page` for many order-0 frames whose references are gone, in the given
        order (the same free lists one-by-one frees would leave)."""
        mm = self.pages
        free = self.free_map
        if mm.refcount[pfns].any() or free[pfns].any() or mm.order[pfns].any():
            raise AssertionError("free_pages_bulk: frames in use, free or compound")
        bad = self.free_page_is_bad(pfns)
        if bad.any():
            pfns = pfns[~bad]
            if not len(pfns):
                return
        mm.flags[pfns] = 0
        mm.index[pfns] = 0
        mm.mapcount[pfns] = 0
        mm.private_bh[pfns] = -1
        mm.mapping_id[pfns] = 0
        if mm.private:
            for pfn in pfns.tolist():
                mm.private.pop(pfn, None)
        blocks = pfns // self.pages_per_block
        first, last = int(blocks.min()), int(blocks.max())
        for block in [first] if first == last else np.unique(blocks).tolist():
            self._nr_free[block] += len(pfns) if first == last else int((blocks == block).sum())
        free[pfns] = 1
        offline = self.block_state_array()[blocks] != 0
        self.release(pfns[offline])
        if not self.free_area.stale and not offline.all():
            for pfn in pfns[~offline].tolist():  # one by one, as free_unref_page would
                self.free_area.free_one(pfn)

    def block_state_array(self) -> np.ndarray:
        """1 where a block is not online (isolated or offline), per block."""
        return np.fromiter((s != ONLINE for s in self.block_state), np.uint8, len(self.blocks))

    def populate(self, pfns: np.ndarray) -> None:
        """Fault in the host memory behind frames about to be written, one
        ``MADV_POPULATE_WRITE`` (Linux 5.14+) per run of consecutive frames: one call
        instead of a fault per 4 KiB when a batch's copies land there. A host without it
        faults them one by one, as before."""
        if not self._populate or not len(pfns):
            return
        try:
            self._advise(MADV_POPULATE_WRITE, pfns)
        except OSError:  # EINVAL: an older kernel
            self._populate = False

    def release_dead(self) -> None:
        """:meth:`release` the frames :meth:`free_page` freed in isolated blocks. Not done as
        they are freed: a ``migrate_pages`` batch queues its copies and does them at its end
        (``MigrateControl.flush_copies``), so an old frame is read after its free; the
        migrator calls this once the batch's copies are done."""
        if self._dead:
            dead = np.asarray(self._dead, np.int64)
            self._dead.clear()
            self.release(dead)

    def release(self, pfns: np.ndarray) -> None:
        """Give the host back the memory of free frames in isolated or offline blocks: what
        they held is dead (the allocator hands them out again only once the block is back
        online, and a frame given back reads as zeros). ``MADV_DONTNEED`` per run of
        consecutive frames, so a migrated block costs a few calls, not one per page."""
        if not len(pfns):
            return
        if hostmem.available():  # off the migration's path (see hotremove.model.hostmem)
            hostmem.release_async(self.frames, *pfn_runs(pfns))
        else:
            self._advise(mmap.MADV_DONTNEED, pfns)

    def _advise(self, advice: int, pfns: np.ndarray) -> None:
        """``madvise(advice)`` over frames ``pfns``: one call per run of consecutive frames."""
        starts, ends = pfn_runs(pfns)
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self._frames_buf.madvise(advice, start * PAGE_SIZE, (end - start) * PAGE_SIZE)

    def set_block_state(self, block: int, state: str) -> None:
        """Isolate, offline or (back) online a block; its free frames leave the allocator's
        lists, or join them at the tails (``undo_isolate_page_range``, ``online_pages``)."""
        self.release_dead()  # before a block reopens (no batch is in flight here)
        hostmem.drain()  # ... and its frames given back before any is handed out again
        before = self.block_state[block]
        self.block_state[block] = state
        b = self.blocks[block]
        area = self.free_area
        if before == ONLINE and state != ONLINE and not area.stale:
            area.remove_block(b.start_pfn, b.end_pfn)
        elif before != ONLINE and state == ONLINE and not area.stale:
            area.add_block_to_tail(b.start_pfn, self.free_map[b.start_pfn : b.end_pfn] != 0)
        if state == OFFLINE:  # the block leaves the machine: so do its frames
            self._frames_buf.madvise(
                mmap.MADV_DONTNEED, b.start_pfn * PAGE_SIZE, b.nr_pages * PAGE_SIZE
            )
