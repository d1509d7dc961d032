"""Physical memory: page frames with real bytes, memory blocks, and the frame allocator.

All frames live in one contiguous numpy buffer (``frames[pfn]`` is a 4096-byte row), so a
page copy is one memcpy. Memory is cut into memory blocks (the unit of hot-remove, 128 MiB on
x86_64); a block is ``online``, ``isolated`` (MIGRATE_ISOLATE: the allocator no longer hands
out its frames) or ``offline``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from hotremove.model.page import PAGE_SIZE, Page

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


def _populated_frames(nr_pages: int) -> np.ndarray:
    """Zeroed frames, faulted in up front (MAP_POPULATE) so the first copy into a frame
    during the offline does not pay a host page fault — the simulated RAM is already there."""
    size = nr_pages * PAGE_SIZE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    buf = mmap.mmap(-1, size, flags=flags)
    return np.frombuffer(buf, dtype=np.uint8).reshape(nr_pages, PAGE_SIZE)


class PhysicalMemory:
    """The machine's RAM: ``nr_pages`` frames, a ``Page`` per frame, free lists per block."""

    def __init__(self, size: int, block_size: int) -> None:
        if size <= 0 or block_size <= 0 or size % block_size or block_size % PAGE_SIZE:
            raise ValueError(f"memory size {size} must be a positive multiple of {block_size}")
        self.nr_pages = size // PAGE_SIZE
        self.pages_per_block = block_size // PAGE_SIZE
        self.frames = _populated_frames(self.nr_pages)
        self.pages = [Page(pfn) for pfn in range(self.nr_pages)]
        self.blocks = [
            MemoryBlock(i, start, start + self.pages_per_block)
            for i, start in enumerate(range(0, self.nr_pages, self.pages_per_block))
        ]
        self.block_state = [ONLINE] * len(self.blocks)
        self._free = bytearray(b"\x01") * self.nr_pages
        # LIFO stacks per block; entries may be stale (taken by alloc_page_at): checked on pop.
        self._free_stack = [list(range(b.end_pfn - 1, b.start_pfn - 1, -1)) for b in self.blocks]
        self._nr_free = [b.nr_pages for b in self.blocks]
        self._alloc_hint = 0  # the block alloc_page tries first

    @property
    def size(self) -> int:
        return self.nr_pages * PAGE_SIZE

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
        reference held by the caller. ``None`` is the simulator's -ENOMEM."""
        hint = self._alloc_hint
        if self.block_state[hint] == ONLINE:
            stack = self._free_stack[hint]
            free = self._free
            while stack:  # the hot path: pop the hinted block's free list
                pfn = stack.pop()
                if free[pfn]:
                    free[pfn] = 0
                    self._nr_free[hint] -= 1
                    page = self.pages[pfn]
                    page._refcount = 1
                    return page
        for block, state in enumerate(self.block_state):
            if state == ONLINE and self._nr_free[block]:
                page = self._pop(block)
                if page is not None:
                    self._alloc_hint = block
                    return page
        return None

    def _pop(self, block: int) -> Page | None:
        stack = self._free_stack[block]
        free = self._free
        while stack:
            pfn = stack.pop()
            if free[pfn]:
                return self._take(pfn)
        return None

    def alloc_contig(self, order: int) -> Page | None:
        """A naturally aligned run of ``1 << order`` free frames in online blocks, returned as
        a compound folio (head with PG_head and ``order``, tails with PG_tail)."""
        nr = 1 << order
        usable = self.nr_pages // nr * nr
        free = np.frombuffer(self._free, dtype=np.uint8)[:usable].reshape(-1, nr)
        candidates = np.flatnonzero(free.all(axis=1))
        for chunk in candidates:
            start = int(chunk) * nr
            if self.block_state[self.block_of(start)] == ONLINE and self.block_of(
                start + nr - 1
            ) == self.block_of(start):
                return self._take_compound(start, order)
        return None

    def alloc_compound_at(self, pfn: int, order: int) -> Page:
        """The workload's placement of a huge page at an aligned, free, online range."""
        nr = 1 << order
        if pfn % nr or not all(self._free[pfn : pfn + nr]):
            raise ValueError(f"frames {pfn:#x}+{nr} are not an aligned free range")
        if self.block_state[self.block_of(pfn)] != ONLINE:
            raise ValueError(f"frame {pfn:#x} is not online")
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
        return self._take(pfn)

    def _take(self, pfn: int) -> Page:
        self._free[pfn] = 0
        self._nr_free[pfn // self.pages_per_block] -= 1
        page = self.pages[pfn]
        page._refcount = 1
        return page

    def free_page(self, page: Page) -> None:
        """Return a frame (or a whole compound folio) whose last reference is gone."""
        if page._refcount != 0:
            raise AssertionError(f"freeing a page that still has references: {page!r}")
        if page.order:
            for tail in range(page.pfn + 1, page.pfn + (1 << page.order)):
                self._free_frame(self.pages[tail])
            page.order = 0
        self._free_frame(page)

    def _free_frame(self, page: Page) -> None:
        pfn = page.pfn
        if self._free[pfn]:
            raise AssertionError(f"double free of frame {pfn:#x}")
        page.flags = 0
        page.mapping = None
        page.private = None
        page.index = 0
        page._mapcount = 0
        self._free[pfn] = 1
        block = pfn // self.pages_per_block
        self._nr_free[block] += 1
        self._free_stack[block].append(pfn)

    def set_block_state(self, block: int, state: str) -> None:
        self.block_state[block] = state
