"""struct page: one per page frame, named and flagged as in include/linux/page-flags.h.

Flags are plain ``int`` bit masks (``PG_dirty`` ...) because they sit in the per-page hot path;
:class:`PG` is the same set as an ``IntFlag`` for rendering. Bit order follows the kernel's
``enum pageflags`` (PG_mappedtodisk is ``PG_owner_2`` in current kernels).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotremove.model.buffer_head import BufferHead

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT


class PG(enum.IntFlag):
    """Page flags. ``anon``/``swapcache``/``slab``/``pgtable`` stand for page types that the
    kernel derives from other fields (``PageAnon`` is a mapping bit); the simulator keeps them
    as flags so every frame's class is visible in one integer."""

    locked = 1 << 0
    writeback = 1 << 1
    referenced = 1 << 2
    uptodate = 1 << 3
    dirty = 1 << 4
    lru = 1 << 5
    head = 1 << 6
    waiters = 1 << 7
    active = 1 << 8
    workingset = 1 << 9
    checked = 1 << 10  # PG_owner_priv_1
    mappedtodisk = 1 << 11  # PG_owner_2
    arch_1 = 1 << 12
    reserved = 1 << 13
    private = 1 << 14
    private_2 = 1 << 15
    reclaim = 1 << 16
    swapbacked = 1 << 17
    unevictable = 1 << 18
    mlocked = 1 << 19
    readahead = 1 << 20
    anon = 1 << 21
    swapcache = 1 << 22
    slab = 1 << 23
    pgtable = 1 << 24
    tail = 1 << 25  # a tail page of a compound folio (the kernel keeps compound_head)


PG_locked = int(PG.locked)
PG_writeback = int(PG.writeback)
PG_referenced = int(PG.referenced)
PG_uptodate = int(PG.uptodate)
PG_dirty = int(PG.dirty)
PG_lru = int(PG.lru)
PG_head = int(PG.head)
PG_active = int(PG.active)
PG_workingset = int(PG.workingset)
PG_checked = int(PG.checked)
PG_mappedtodisk = int(PG.mappedtodisk)
PG_reserved = int(PG.reserved)
PG_private = int(PG.private)
PG_private_2 = int(PG.private_2)
PG_reclaim = int(PG.reclaim)
PG_swapbacked = int(PG.swapbacked)
PG_unevictable = int(PG.unevictable)
PG_mlocked = int(PG.mlocked)
PG_readahead = int(PG.readahead)
PG_anon = int(PG.anon)
PG_swapcache = int(PG.swapcache)
PG_slab = int(PG.slab)
PG_pgtable = int(PG.pgtable)
PG_tail = int(PG.tail)

#: A 2 MiB transparent huge page: a folio of 512 frames (HPAGE_PMD_ORDER on x86_64).
HPAGE_PMD_ORDER = 9

#: Pages the kernel can never migrate (has_unmovable_pages(): reserved, slab, page tables).
PG_UNMOVABLE = PG_reserved | PG_slab | PG_pgtable


class Page:
    """One page frame's metadata. ``_refcount == 0`` means the frame is free (in the buddy).

    Reference rules follow the kernel: the page cache holds one reference, ``PG_private``
    (attached buffer_heads) holds one, every page-table mapping holds one, and whoever isolated
    the page for migration holds one.
    """

    __slots__ = (
        "_mapcount",
        "_refcount",
        "flags",
        "index",
        "mapping",
        "order",
        "pfn",
        "private",
    )

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn
        self.flags = 0
        self._refcount = 0
        self._mapcount = 0  # number of page-table mappings (the kernel stores this minus one)
        self.mapping: Any = None  # AddressSpace for page cache, AnonVma for anonymous pages
        self.index = 0
        self.private: BufferHead | Any = None  # buffer ring; the swap entry in the swap cache
        self.order = 0  # folio order, kept on the head page (PG_head)

    def __repr__(self) -> str:
        return f"<Page pfn={self.pfn:#x} flags={PG(self.flags)!r} ref={self._refcount}>"


def folio_nr_pages(page: Page) -> int:
    return 1 << page.order


def page_count(page: Page) -> int:
    return page._refcount


def get_page(page: Page) -> None:
    page._refcount += 1


def put_page(page: Page) -> None:
    """Drop a reference; the caller frees the frame when this was the last one."""
    if page._refcount <= 0:
        raise AssertionError(f"put_page on a free page {page!r}")
    page._refcount -= 1


def page_has_buffers(page: Page) -> bool:
    return page.flags & PG_private != 0 and page.private is not None


def attach_page_private(page: Page, data: BufferHead) -> None:
    """``folio_attach_private``: PG_private and one page reference travel with ->private."""
    page.private = data
    page._refcount += 1
    page.flags |= PG_private


def detach_page_private(page: Page) -> BufferHead | None:
    """``folio_detach_private``: the inverse of :func:`attach_page_private`."""
    if not page.flags & PG_private:
        return None
    data = page.private
    page.private = None
    page.flags &= ~PG_private
    put_page(page)
    return data


def trylock_page(page: Page) -> bool:
    if _tracker is not None:
        return _tracker.trylock_page(page)
    if page.flags & PG_locked:
        return False
    page.flags |= PG_locked
    return True


def unlock_page(page: Page) -> None:
    if _tracker is not None:
        _tracker.unlock_page(page)
        return
    if not page.flags & PG_locked:
        raise AssertionError(f"unlock_page on an unlocked page {page!r}")
    page.flags &= ~PG_locked


def lock_page(page: Page) -> None:
    """Sleeping page lock: waits for the holder (``folio_lock``)."""
    if _tracker is not None:
        _tracker.lock_page(page)
        return
    from hotremove.model.locks import current

    task = current()
    task.might_sleep("lock_page")
    if page.flags & PG_locked:
        task.wait_for(page, "lock_page")
    page.flags |= PG_locked


#: The lock tracker (lockdep, the explorer) while one runs: see locks.set_tracker.
_tracker: Any = None
