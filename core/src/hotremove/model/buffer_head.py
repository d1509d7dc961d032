"""struct buffer_head: one per filesystem block cached in a page (include/linux/buffer_head.h).

A page with 1 KiB blocks carries a ring of four buffer_heads (``b_this_page``); each knows its
page (``b_page``), where its bytes are (``b_offset``, the kernel's ``b_data`` minus the page
address), its disk block (``b_blocknr``) and its state bits. Rebinding a buffer to a new page
means changing ``b_page``/``b_offset`` — exactly what ``set_bh_page`` does.

Longer than 450 lines because it is one kernel object, as include/linux/buffer_head.h is: the
slab of its fields (:class:`BufferHeadPool`), the handle with the kernel's field names
(:class:`BufferHead`) and the helpers of fs/buffer.c share the state bits and the
``b_this_page`` ring; apart, each would reach into the other's arrays.
"""

from __future__ import annotations

import enum
import sys
from typing import Any

import numpy as np

from hotremove.model.locks import current, register_tracker_user
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
BH_Write_EIO = int(BH.Write_EIO)
BH_Migrate = int(BH.Migrate)
BH_JBD = int(BH.JBD)
BH_JBDDirty = int(BH.JBDDirty)


class BufferHeadPool:
    """``bh_cachep``: the slab every buffer_head comes from, stored as one array per field.

    Four 1 KiB buffers a page as Python objects cost ~600 bytes; here a buffer_head is 30
    bytes (``b_page`` and ``b_this_page`` are a frame number and a pool index, as the kernel's
    pointers are addresses). :class:`BufferHead` is the handle code uses; the engine's batched
    path works on the arrays. ``b_private`` (jbd2's journal_head) is sparse. Freed buffers
    are not reused: a stale handle then still reads ``b_page is None`` instead of another
    page's buffer.
    """

    __slots__ = (
        "_blocknr",
        "_count",
        "_next",
        "_offset",
        "_page",
        "_size",
        "_state",
        "b_blocknr",
        "b_count",
        "b_offset",
        "b_page",
        "b_private",
        "b_size",
        "b_state",
        "b_this_page",
        "memmap",
        "nr",
    )

    FIELDS = (
        ("b_state", np.uint32),
        ("b_blocknr", np.int64),
        ("b_page", np.int32),  # pfn; -1 after try_to_free_buffers
        ("b_offset", np.uint16),
        ("b_size", np.int32),
        ("b_count", np.int32),
        ("b_this_page", np.int32),  # pool index of the next buffer in the page's ring
    )

    def __init__(self, capacity: int = 1024) -> None:
        self.nr = 0
        self.memmap: Any = None  # set by PhysicalMemory: b_page → Page handles
        self.b_private: dict[int, Any] = {}
        self._grow(max(capacity, 16))

    def _grow(self, capacity: int) -> None:
        """Move every field to arrays of ``capacity`` entries (>= ``nr``)."""
        for name, dtype in self.FIELDS:
            old = getattr(self, name, None)
            new = np.zeros(capacity, dtype)
            if old is not None:
                new[: self.nr] = old[: self.nr]
            setattr(self, name, new)
            setattr(
                self, "_" + name.removeprefix("b_").replace("this_page", "next"), memoryview(new)
            )

    def reserve(self, n: int) -> None:
        """Room for ``n`` more buffers (grows by at least a quarter: amortised O(1))."""
        need = self.nr + n
        capacity = len(self.b_state)
        if need > capacity:
            self._grow(max(need, capacity + capacity // 4))

    def alloc_rings(
        self, pfns: np.ndarray, blocksize: int, blocknrs: np.ndarray, state: int
    ) -> np.ndarray:
        """Rings of ``blocknrs.shape[1]`` buffers for the frames ``pfns`` (one row of block
        numbers each; negative: past EOF, not BH_Mapped). Returns each ring's head index."""
        n, per_page = blocknrs.shape
        self.reserve(n * per_page)
        first = self.nr
        idx = np.arange(first, first + n * per_page, dtype=np.int64).reshape(n, per_page)
        flat = slice(first, first + n * per_page)
        self.nr += n * per_page
        self.b_blocknr[flat] = blocknrs.ravel()
        states = np.full((n, per_page), state, np.uint32)
        states[blocknrs < 0] &= np.uint32(~BH_Mapped & 0xFFFFFFFF)
        self.b_state[flat] = states.ravel()
        self.b_page[flat] = np.repeat(np.asarray(pfns, np.int32), per_page)
        self.b_offset[flat] = np.tile(np.arange(per_page, dtype=np.uint16) * blocksize, n)
        self.b_size[flat] = blocksize
        self.b_count[flat] = 0
        self.b_this_page[flat] = np.roll(idx, -1, axis=1).ravel()
        return idx[:, 0]

    def rings(self, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every buffer of the rings that start at ``heads`` (entries < 0: no ring), with
        the position in ``heads`` of its ring: the ``b_this_page`` walk for many pages."""
        nxt = self.b_this_page
        where = np.flatnonzero(heads >= 0)
        first = heads[where].astype(np.int64)
        members, owners = [first], [where]
        cur = nxt[first].astype(np.int64)
        live = cur != first
        while live.any():
            members.append(cur[live])
            owners.append(where[live])
            cur = np.where(live, nxt[cur], cur).astype(np.int64)
            live &= cur != first
        return np.concatenate(members), np.concatenate(owners)

    def shrink_to_fit(self) -> None:
        """Drop the spare capacity (the builder calls it once every ring exists)."""
        if len(self.b_state) > max(self.nr, 16):
            self._grow(max(self.nr, 16))

    def handle(self, index: int) -> BufferHead:
        return BufferHead(self, index)

    @property
    def nbytes(self) -> int:
        """Bytes of the pool's arrays (capacity, not just buffers in use)."""
        return sum(getattr(self, name).nbytes for name, _ in self.FIELDS) + sys.getsizeof(
            self.b_private
        )


class BufferHead:
    """A handle on one buffer_head of the pool: a filesystem block's view into a page.
    ``b_count`` counts users other than the page. Handles compare equal when they name the
    same buffer: compare with ``==``, never ``is``."""

    __slots__ = ("_bh_index", "_pool")

    def __init__(self, pool: BufferHeadPool, index: int) -> None:
        self._pool = pool
        self._bh_index = index

    @property
    def b_state(self) -> int:
        return self._pool._state[self._bh_index]  # type: ignore[no-any-return]

    @b_state.setter
    def b_state(self, value: int) -> None:
        self._pool._state[self._bh_index] = value

    @property
    def b_blocknr(self) -> int:
        """The disk block (negative: none, past EOF)."""
        return self._pool._blocknr[self._bh_index]  # type: ignore[no-any-return]

    @b_blocknr.setter
    def b_blocknr(self, value: int) -> None:
        self._pool._blocknr[self._bh_index] = value

    @property
    def b_offset(self) -> int:
        """Where the bytes are in the page (the kernel's b_data minus the page address)."""
        return self._pool._offset[self._bh_index]  # type: ignore[no-any-return]

    @b_offset.setter
    def b_offset(self, value: int) -> None:
        self._pool._offset[self._bh_index] = value

    @property
    def b_size(self) -> int:
        return self._pool._size[self._bh_index]  # type: ignore[no-any-return]

    @b_size.setter
    def b_size(self, value: int) -> None:
        self._pool._size[self._bh_index] = value

    @property
    def b_count(self) -> int:
        """Users other than the page (get_bh/put_bh)."""
        return self._pool._count[self._bh_index]  # type: ignore[no-any-return]

    @b_count.setter
    def b_count(self, value: int) -> None:
        self._pool._count[self._bh_index] = value

    @property
    def b_page(self) -> Page | None:
        pfn = self._pool._page[self._bh_index]
        return None if pfn < 0 else Page(self._pool.memmap, pfn)

    @b_page.setter
    def b_page(self, page: Page | None) -> None:
        self._pool._page[self._bh_index] = -1 if page is None else page.pfn

    @property
    def b_this_page(self) -> BufferHead:
        return BufferHead(self._pool, self._pool._next[self._bh_index])

    @b_this_page.setter
    def b_this_page(self, bh: BufferHead) -> None:
        self._pool._next[self._bh_index] = bh._bh_index

    @property
    def b_private(self) -> Any:
        """jbd2's journal_head when BH_JBD is set."""
        return self._pool.b_private.get(self._bh_index)

    @b_private.setter
    def b_private(self, value: Any) -> None:
        if value is None:
            self._pool.b_private.pop(self._bh_index, None)
        else:
            self._pool.b_private[self._bh_index] = value

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is BufferHead
            and other._bh_index == self._bh_index
            and other._pool is self._pool
        )

    def __hash__(self) -> int:
        return self._bh_index << 1 | 1  # odd: page handles hash even

    def __repr__(self) -> str:
        page = self._pool._page[self._bh_index]
        return (
            f"<BufferHead blk={self.b_blocknr} page={page:#x}+{self.b_offset} "
            f"state={BH(self.b_state)!r} count={self.b_count}>"
        )


def buffer_ring(head: BufferHead | None) -> list[BufferHead]:
    """The ring starting at ``head``, as a list (safe to modify the ring while iterating);
    empty for anything that is not a buffer (a page's folio state, a swap entry, None)."""
    if not isinstance(head, BufferHead):
        return []
    pool = head._pool
    return [BufferHead(pool, i) for i in _ring_indices(pool, head._bh_index)]


def page_buffers(page: Page) -> list[BufferHead]:
    """The buffers attached to ``page`` (``page_buffers`` + the ``b_this_page`` walk); none
    when ->private holds something else (a folio state)."""
    return buffer_ring(page.private)


def create_page_buffers(page: Page, blocksize: int, blocknrs: list[int], state: int) -> BufferHead:
    """Attach a ring of buffers for ``blocknrs`` to ``page`` (``create_empty_buffers`` and the
    block mapping a read did), taking the PG_private reference. A negative block number is a
    block past EOF: no disk block behind it, so not BH_Mapped."""
    pool = page._mm.bh_pool
    blocks = np.asarray([blocknrs], np.int64)
    head = BufferHead(
        pool, int(pool.alloc_rings(np.asarray([page.pfn]), blocksize, blocks, state)[0])
    )
    attach_page_private(page, head)
    if (blocks >= 0).all() and state & BH_Mapped:
        page.flags |= PG_mappedtodisk
    return head


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
    task = current()
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
    head = page.private
    if not isinstance(head, BufferHead):
        return False  # not buffers: the filesystem's ->release_folio decides (page_writeback)
    pool = head._pool
    ring = _ring_indices(pool, head._bh_index)
    state, count = pool._state, pool._count
    for i in ring:
        if count[i] or state[i] & (BH_Dirty | BH_Lock):
            return False
    detach_page_private(page)
    for i in ring:
        pool._page[i] = -1  # freed: b_page is None, the buffer must never be used again
    flags = page.flags
    if flags & PG_dirty:
        page.flags = flags & ~PG_dirty
        if page.mapping is not None:
            page.mapping.clear_dirty_tag(page.index)
    return True


def _ring_indices(pool: BufferHeadPool, first: int) -> list[int]:
    """The pool indices of the ring starting at ``first`` (the b_this_page walk)."""
    nxt = pool._next
    ring = [first]
    i = nxt[first]
    while i != first:
        ring.append(i)
        i = nxt[i]
    return ring


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
    "BH_Write_EIO",
    "BufferHead",
    "BufferHeadPool",
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

register_tracker_user(__name__)
