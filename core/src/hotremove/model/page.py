"""struct page: one per page frame, named and flagged as in include/linux/page-flags.h.

Flags are plain ``int`` bit masks (``PG_dirty`` ...) because they sit in the per-page hot path;
:class:`PG` is the same set as an ``IntFlag`` for rendering. Bit order follows the kernel's
``enum pageflags`` (PG_mappedtodisk is ``PG_owner_2`` in current kernels).
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from hotremove.model.locks import current, register_tracker_user

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
HPAGE_NR = 1 << HPAGE_PMD_ORDER  # HPAGE_PMD_NR: base pages in a huge page

#: Pages the kernel can never migrate (has_unmovable_pages(): reserved, slab, page tables).
PG_UNMOVABLE = PG_reserved | PG_slab | PG_pgtable


class MemMap:
    """``mem_map[]``: every frame's ``struct page``, stored as one array per field.

    A million ``Page`` objects cost ~190 bytes each in CPython; the kernel's struct page is
    64. Keeping the fields in arrays (≈37 bytes a frame) lets the engine move a whole
    ``migrate_pages_batch`` with a few vectorised operations, while :class:`Page` handles give
    plugins and the per-page path the kernel's field names. Scalar access goes through
    memoryviews (Python ints, no numpy scalars); vectorised access through the arrays.
    ``->mapping`` is a small integer (``mapping_id``) into ``mappings`` — the kernel's pointer,
    made an index so that it can be gathered, scattered and grouped as an array (0 is None);
    ``->private`` is the head buffer's index in ``bh_pool`` (``private_bh``, -1: none) or, for
    anything else (a swap entry), ``private``.
    """

    __slots__ = (
        "_flags",
        "_index",
        "_mapcount",
        "_mapping_id",
        "_mapping_index",
        "_order",
        "_private_bh",
        "_refcount",
        "bh_pool",
        "flags",
        "index",
        "mapcount",
        "mapping_id",
        "mappings",
        "nr_pages",
        "order",
        "private",
        "private_bh",
        "refcount",
    )

    def __init__(self, nr_pages: int, bh_pool: Any) -> None:
        self.nr_pages = nr_pages
        self.flags = np.zeros(nr_pages, np.uint32)
        self.refcount = np.zeros(nr_pages, np.int32)
        self.mapcount = np.zeros(nr_pages, np.int32)  # page-table mappings (not minus one)
        self.index = np.zeros(nr_pages, np.int64)
        self.order = np.zeros(nr_pages, np.uint8)  # folio order, on the head page
        self.private_bh = np.full(nr_pages, -1, np.int32)
        self.mapping_id = np.zeros(nr_pages, np.int32)
        self.mappings: list[Any] = [None]  # mapping_id → object
        self._mapping_index: dict[int, int] = {}  # id(object) → mapping_id
        self.private: dict[int, Any] = {}  # pfn → non-buffer ->private (swap entry ...)
        self.bh_pool = bh_pool
        self._flags = memoryview(self.flags)
        self._refcount = memoryview(self.refcount)
        self._mapcount = memoryview(self.mapcount)
        self._index = memoryview(self.index)
        self._order = memoryview(self.order)
        self._private_bh = memoryview(self.private_bh)
        self._mapping_id = memoryview(self.mapping_id)

    def mapping_index(self, mapping: Any) -> int:
        """The ``mapping_id`` of ``mapping`` (registered on first use; None is 0)."""
        if mapping is None:
            return 0
        index = self._mapping_index.get(id(mapping))
        if index is None:
            index = self._mapping_index[id(mapping)] = len(self.mappings)
            self.mappings.append(mapping)
        return index

    def __len__(self) -> int:
        return self.nr_pages

    def __getitem__(self, pfn: int) -> Page:
        if not 0 <= pfn < self.nr_pages:
            raise IndexError(f"pfn {pfn:#x} outside memory")
        return Page(self, pfn)

    def __iter__(self) -> Iterator[Page]:
        return (Page(self, pfn) for pfn in range(self.nr_pages))

    @property
    def nbytes(self) -> int:
        """Bytes of the struct page arrays and their side tables."""
        arrays = (self.flags, self.refcount, self.mapcount, self.index, self.order)
        return (
            sum(a.nbytes for a in arrays)
            + self.private_bh.nbytes
            + self.mapping_id.nbytes
            + sys.getsizeof(self.mappings)
            + sys.getsizeof(self._mapping_index)
            + sys.getsizeof(self.private)
        )


class PageArray(Sequence["Page"]):
    """A list of pages held as frame numbers (what the engine's scans return): handles are
    made only for the pages someone looks at one by one, and array code reads ``pfns``."""

    __slots__ = ("_mm", "pfns")

    def __init__(self, mm: MemMap, pfns: np.ndarray) -> None:
        self._mm = mm
        self.pfns = pfns

    def __len__(self) -> int:
        return len(self.pfns)

    @overload
    def __getitem__(self, i: int) -> Page: ...

    @overload
    def __getitem__(self, i: slice) -> PageArray: ...

    def __getitem__(self, i: int | slice) -> Page | PageArray:
        if isinstance(i, slice):
            return PageArray(self._mm, self.pfns[i])
        return Page(self._mm, int(self.pfns[i]))

    def __iter__(self) -> Iterator[Page]:
        mm = self._mm
        return (Page(mm, pfn) for pfn in self.pfns.tolist())

    def mapping_ids(self) -> np.ndarray:
        """Every page's ``mapping_id`` (see :class:`MemMap`)."""
        return self._mm.mapping_id[self.pfns]


class Page:
    """A handle on one frame's ``struct page`` (``mem_map[pfn]``). ``_refcount == 0`` means
    the frame is free (in the buddy).

    Handles are made on demand and compare equal when they name the same frame, so compare
    pages with ``==``, never ``is`` (in C these are pointers into mem_map, with the same
    rule). Reference rules follow the kernel: the page cache holds one reference,
    ``PG_private`` (attached buffer_heads) holds one, every page-table mapping holds one, and
    whoever isolated the page for migration holds one.
    """

    __slots__ = ("_mm", "pfn")

    def __init__(self, mm: MemMap, pfn: int) -> None:
        self._mm = mm
        self.pfn = pfn

    # Written out (not through _field) because these sit in the per-page hot path.
    @property
    def flags(self) -> int:
        return self._mm._flags[self.pfn]  # type: ignore[no-any-return]

    @flags.setter
    def flags(self, value: int) -> None:
        self._mm._flags[self.pfn] = value

    @property
    def _refcount(self) -> int:
        return self._mm._refcount[self.pfn]  # type: ignore[no-any-return]

    @_refcount.setter
    def _refcount(self, value: int) -> None:
        self._mm._refcount[self.pfn] = value

    @property
    def _mapcount(self) -> int:
        """Page-table mappings (the kernel stores this minus one)."""
        return self._mm._mapcount[self.pfn]  # type: ignore[no-any-return]

    @_mapcount.setter
    def _mapcount(self, value: int) -> None:
        self._mm._mapcount[self.pfn] = value

    @property
    def index(self) -> int:
        """Index in the mapping (file page, virtual page, ...)."""
        return self._mm._index[self.pfn]  # type: ignore[no-any-return]

    @index.setter
    def index(self, value: int) -> None:
        self._mm._index[self.pfn] = value

    @property
    def order(self) -> int:
        """Folio order, kept on the head page (PG_head)."""
        return self._mm._order[self.pfn]  # type: ignore[no-any-return]

    @order.setter
    def order(self, value: int) -> None:
        self._mm._order[self.pfn] = value

    @property
    def mapping(self) -> Any:
        """AddressSpace for page cache, AnonVma for anonymous pages, None when free."""
        mm = self._mm
        return mm.mappings[mm._mapping_id[self.pfn]]

    @mapping.setter
    def mapping(self, value: Any) -> None:
        mm = self._mm
        mm._mapping_id[self.pfn] = mm.mapping_index(value)

    @property
    def private(self) -> Any:
        """The head of the buffer ring; the swap entry in the swap cache; else None."""
        mm = self._mm
        bh = mm._private_bh[self.pfn]
        if bh >= 0:
            return mm.bh_pool.handle(bh)
        return mm.private.get(self.pfn)

    @private.setter
    def private(self, value: Any) -> None:
        mm = self._mm
        pfn = self.pfn
        index = getattr(value, "_bh_index", None)
        if index is not None and value._pool is mm.bh_pool:
            mm._private_bh[pfn] = index
            mm.private.pop(pfn, None)
            return
        mm._private_bh[pfn] = -1
        if value is None:
            mm.private.pop(pfn, None)
        else:
            mm.private[pfn] = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Page and other.pfn == self.pfn and other._mm is self._mm

    def __hash__(self) -> int:
        return self.pfn << 1  # even: buffer_head handles hash odd

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
    """->private is a ring of buffer_heads (not a folio state, a swap entry or nothing)."""
    return page.flags & PG_private != 0 and page._mm._private_bh[page.pfn] >= 0


@dataclass(eq=False)
class FolioState:
    """->private of a page-cache page whose filesystem keeps per-folio state without
    buffer_heads — iomap's ``struct iomap_folio_state`` (per-block uptodate and dirty bits,
    the bytes of I/O in flight; fs/iomap/buffered-io.c), btrfs' subpage state — for an a_ops
    whose ``private`` is ``"folio_state"``. The core never looks inside: it is attached when
    the page is read (``folio_attach_private``: PG_private and one page reference) and moves
    whole with the folio (``filemap_migrate_folio``). Compared by identity."""

    owner: str  #: the a_ops table of the page it was attached to

    def __repr__(self) -> str:
        return f"<FolioState {self.owner} {id(self):#x}>"


def attach_page_private(page: Page, data: Any) -> None:
    """``folio_attach_private``: PG_private and one page reference travel with ->private."""
    page.private = data
    page._refcount += 1
    page.flags |= PG_private


def detach_page_private(page: Page) -> Any:
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
    task = current()
    task.might_sleep("lock_page")
    if page.flags & PG_locked:
        task.wait_for(page, "lock_page")
    page.flags |= PG_locked


#: The lock tracker (lockdep, the explorer) while one runs: see locks.set_tracker.
_tracker: Any = None

register_tracker_user(__name__)
