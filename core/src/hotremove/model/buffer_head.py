"""struct buffer_head: one per filesystem block cached in a page (include/linux/buffer_head.h).

A page with 1 KiB blocks carries a ring of four buffer_heads (``b_this_page``); each knows its
page (``b_page``), where its bytes are (``b_offset``, the kernel's ``b_data`` minus the page
address), its disk block (``b_blocknr``) and its state bits. Rebinding a buffer to a new page
means changing ``b_page``/``b_offset`` — exactly what ``set_bh_page`` does.
"""

from __future__ import annotations

import enum
from typing import Any

from hotremove.model.locks import _current
from hotremove.model.page import (
    Page,
    PG_dirty,
    PG_mappedtodisk,
    PG_private,
    attach_page_private,
    detach_page_private,
)

#: The lock tracker (lockdep, the explorer) while one runs: see locks.set_tracker.
_tracker: Any = None


class BH(enum.IntFlag):
    """Buffer state bits in the kernel's order; jbd2's bits start at BH_PrivateStart."""

    Uptodate = 1 << 0
    Dirty = 1 << 1
    Lock = 1 << 2
    Req = 1 << 3
    Uptodate_Lock = 1 << 4
    Mapped = 1 << 5
    New = 1 << 6
    Async_Read = 1 << 7
    Async_Write = 1 << 8
    Delay = 1 << 9
    Boundary = 1 << 10
    Write_EIO = 1 << 11
    Unwritten = 1 << 12
    Quiet = 1 << 13
    Meta = 1 << 14
    Prio = 1 << 15
    Defer_Completion = 1 << 16
    Migrate = 1 << 17
    JBD = 1 << 18  # BH_PrivateStart: a journal_head is attached (jbd2)
    JWrite = 1 << 19
    Freed = 1 << 20
    Revoked = 1 << 21
    RevokeValid = 1 << 22
    JBDDirty = 1 << 23  # dirty, but the journal owns writing it


BH_Uptodate = int(BH.Uptodate)
BH_Dirty = int(BH.Dirty)
BH_Lock = int(BH.Lock)
BH_Mapped = int(BH.Mapped)
BH_Async_Write = int(BH.Async_Write)
BH_Migrate = int(BH.Migrate)
BH_JBD = int(BH.JBD)
BH_JBDDirty = int(BH.JBDDirty)


class BufferHead:
    """A filesystem block's view into a page. ``b_count`` counts users other than the page."""

    __slots__ = (
        "b_blocknr",
        "b_count",
        "b_offset",
        "b_page",
        "b_private",
        "b_size",
        "b_state",
        "b_this_page",
    )

    def __init__(self, page: Page, offset: int, size: int, blocknr: int, state: int) -> None:
        self.b_page = page
        self.b_offset = offset
        self.b_size = size
        self.b_blocknr = blocknr
        self.b_state = state
        self.b_count = 0
        self.b_private: Any = None  # journal_head when BH_JBD is set
        self.b_this_page: BufferHead = self

    def __repr__(self) -> str:
        return (
            f"<BufferHead blk={self.b_blocknr} page={self.b_page.pfn:#x}+{self.b_offset} "
            f"state={BH(self.b_state)!r} count={self.b_count}>"
        )


def buffer_ring(head: BufferHead | None) -> list[BufferHead]:
    """The ring starting at ``head``, as a list (safe to modify the ring while iterating)."""
    if head is None:
        return []
    ring = [head]
    bh = head.b_this_page
    while bh is not head:
        ring.append(bh)
        bh = bh.b_this_page
    return ring


def page_buffers(page: Page) -> list[BufferHead]:
    """The buffers attached to ``page`` (``page_buffers`` + the ``b_this_page`` walk)."""
    return buffer_ring(page.private)


def create_page_buffers(page: Page, blocksize: int, blocknrs: list[int], state: int) -> BufferHead:
    """Attach a ring of buffers for ``blocknrs`` to ``page`` (``create_empty_buffers`` and the
    block mapping a read did), taking the PG_private reference. A negative block number is a
    block past EOF: no disk block behind it, so not BH_Mapped."""
    bhs = [
        BufferHead(
            page, i * blocksize, blocksize, blocknr, state if blocknr >= 0 else state & ~BH_Mapped
        )
        for i, blocknr in enumerate(blocknrs)
    ]
    for bh, nxt in zip(bhs, bhs[1:] + bhs[:1], strict=True):
        bh.b_this_page = nxt
    attach_page_private(page, bhs[0])
    if all(bh.b_state & BH_Mapped for bh in bhs):
        page.flags |= PG_mappedtodisk
    return bhs[0]


def set_bh_page(bh: BufferHead, page: Page, offset: int) -> None:
    """Point ``bh`` at ``page`` at ``offset`` (``folio_set_bh``): the rebinding primitive."""
    bh.b_page = page
    bh.b_offset = offset


def get_bh(bh: BufferHead) -> None:
    bh.b_count += 1


def put_bh(bh: BufferHead) -> None:
    if bh.b_count <= 0:
        raise AssertionError(f"put_bh underflow on {bh!r}")
    bh.b_count -= 1


def buffer_locked(bh: BufferHead) -> bool:
    return bh.b_state & BH_Lock != 0


def buffer_dirty(bh: BufferHead) -> bool:
    return bh.b_state & BH_Dirty != 0


def buffer_uptodate(bh: BufferHead) -> bool:
    return bh.b_state & BH_Uptodate != 0


def trylock_buffer(bh: BufferHead) -> bool:
    """Atomic test-and-set of BH_Lock: never sleeps."""
    if _tracker is not None:
        return _tracker.trylock_buffer(bh)
    if bh.b_state & BH_Lock:
        return False
    bh.b_state |= BH_Lock
    return True


def lock_buffer(bh: BufferHead) -> None:
    """Sleeping buffer lock: ``might_sleep()``, then wait for the holder (e.g. I/O in flight)."""
    if _tracker is not None:
        _tracker.lock_buffer(bh)
        return
    task = _current[-1]
    task.might_sleep("lock_buffer")
    if bh.b_state & BH_Lock:
        task.wait_for(bh, "lock_buffer")
    bh.b_state |= BH_Lock


def unlock_buffer(bh: BufferHead) -> None:
    if _tracker is not None:
        _tracker.unlock_buffer(bh)
        return
    if not bh.b_state & BH_Lock:
        raise AssertionError(f"unlock_buffer on an unlocked buffer {bh!r}")
    bh.b_state &= ~BH_Lock


def mark_buffer_dirty(bh: BufferHead) -> None:
    """Dirty one buffer and its page (``mark_buffer_dirty`` → ``__folio_mark_dirty``) without
    dirtying the page's other buffers."""
    bh.b_state |= BH_Dirty
    page = bh.b_page
    if not page.flags & PG_dirty:
        page.flags |= PG_dirty
        mapping = page.mapping
        if mapping is not None:
            mapping.tag_dirty(page.index)


def try_to_free_buffers(page: Page) -> bool:
    """Drop the page's buffers if none is busy (``b_count``, BH_Dirty or BH_Lock), as
    fs/buffer.c's ``drop_buffers`` does. A page whose buffers were all clean is cleaned too:
    reattaching buffers to a dirty page would mark every buffer dirty."""
    if not page.flags & PG_private:
        return True
    for bh in page_buffers(page):
        if bh.b_count or bh.b_state & (BH_Dirty | BH_Lock):
            return False
    head = detach_page_private(page)
    for bh in buffer_ring(head):
        bh.b_page = None  # type: ignore[assignment]  # freed: must never be used again
    if page.flags & PG_dirty:
        page.flags &= ~PG_dirty
        if page.mapping is not None:
            page.mapping.clear_dirty_tag(page.index)
    return True


__all__ = [
    "BH",
    "BH_JBD",
    "BH_Async_Write",
    "BH_Dirty",
    "BH_JBDDirty",
    "BH_Lock",
    "BH_Mapped",
    "BH_Migrate",
    "BH_Uptodate",
    "BufferHead",
    "buffer_dirty",
    "buffer_locked",
    "buffer_ring",
    "buffer_uptodate",
    "create_page_buffers",
    "get_bh",
    "lock_buffer",
    "mark_buffer_dirty",
    "page_buffers",
    "put_bh",
    "set_bh_page",
    "try_to_free_buffers",
    "trylock_buffer",
    "unlock_buffer",
]
