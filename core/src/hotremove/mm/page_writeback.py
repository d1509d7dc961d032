"""Writing dirty page-cache data to the image: per page (the fallback's ``writeout``) and for
a whole machine (``sync``).

Every write goes through :class:`~hotremove.model.blockdev.BlockDevice`; adjacent disk blocks
are merged into one request, as the block layer's plugging would merge the bios of one
writeout. Writing is synchronous I/O and therefore a sleeping operation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hotremove.model.address_space import AddressSpace
from hotremove.model.blockdev import BlockDevice
from hotremove.model.buffer_head import (
    BH_Async_Write,
    BH_Dirty,
    BH_JBDDirty,
    BH_Lock,
    BH_Write_EIO,
    page_buffers,
    try_to_free_buffers,
)
from hotremove.model.locks import current
from hotremove.model.machine import Machine
from hotremove.model.page import (
    PAGE_SIZE,
    Page,
    PG_dirty,
    PG_private,
    PG_writeback,
    detach_page_private,
    page_has_buffers,
)

Block = tuple[int, np.ndarray]  # (disk block number, its bytes)


def submit_block_runs(
    bdev: BlockDevice,
    blocks: Iterable[Block],
    *,
    failed: list[int] | None = None,
    queued: bool = False,
) -> int:
    """Write ``blocks`` with one request per run of adjacent block numbers; return the number
    of requests (``submit_bio_wait`` per merged bio). A write error raises — unless
    ``failed`` is given (asynchronous writeback: each bio completes on its own), then the
    failed run's block numbers are appended to it and the other runs go on."""
    listed = list(blocks)
    if not listed:
        return 0
    blocknrs = np.fromiter((b for b, _ in listed), np.int64, len(listed))
    return submit_runs(
        bdev, blocknrs, np.stack([d for _, d in listed]), failed=failed, queued=queued
    )


def submit_runs(
    bdev: BlockDevice,
    blocknrs: np.ndarray,
    data: np.ndarray,
    *,
    failed: list[int] | None = None,
    queued: bool = False,
) -> int:
    """:func:`submit_block_runs` for blocks given as arrays: ``data[i]`` (one row per block)
    goes to block ``blocknrs[i]``. Blocks are sorted by number (stable: equal numbers keep
    their order, each starting a request of its own) and merged into one request per run.
    Without ``failed`` and a fault injector no request is decided on its own: they go to the
    device in one :meth:`~hotremove.model.blockdev.BlockDevice.submit_writes` call."""
    if not len(blocknrs):
        return 0
    current().might_sleep("submit_bio_wait")
    steps = np.diff(blocknrs)
    if (steps < 0).any():  # a stable sort of what is already in order changes nothing
        order = np.argsort(blocknrs, kind="stable")
        blocknrs, data = blocknrs[order], data[order]
        steps = np.diff(blocknrs)
    breaks = np.flatnonzero(steps != 1) + 1
    bounds = np.concatenate([[0], breaks, [len(blocknrs)]]).tolist()
    starts = blocknrs[bounds[:-1]].tolist()
    if failed is None and bdev.fault is None:  # nothing decides request by request
        return bdev.submit_writes(starts, bounds, np.ascontiguousarray(data), queued=queued)
    for start, a, b in zip(starts, bounds[:-1], bounds[1:], strict=True):
        try:
            bdev.submit_write(start, data[a:b].tobytes(), queued=queued)
        except OSError:
            if failed is None:
                raise
            failed.extend(range(start, start + b - a))
    return len(starts)


def dirty_blocks(frames: np.ndarray, mapping: AddressSpace, page: Page) -> list[Block]:
    """The page's dirty blocks, cleaning their dirty bits (``test_clear_buffer_dirty``).

    A page with buffers writes only its dirty buffers. A page without buffers (``nobh``, or
    one whose ->private is a filesystem's folio state) writes every block that lies inside
    the file, found through the inode's block map.
    """
    frame = frames[page.pfn]
    if page_has_buffers(page):
        blocks = []
        for bh in page_buffers(page):
            if bh.b_state & BH_Dirty:
                bh.b_state &= ~BH_Dirty
                blocks.append((bh.b_blocknr, frame[bh.b_offset : bh.b_offset + bh.b_size]))
        return blocks
    if not page.flags & PG_dirty:
        return []
    inode = mapping.host
    bs = inode.i_sb.s_blocksize
    per_page = PAGE_SIZE // bs
    first = page.index * per_page
    last = min(first + per_page, len(inode.block_map))
    return [
        (inode.block_map[lblk], frame[(lblk - first) * bs : (lblk - first + 1) * bs])
        for lblk in range(first, last)
    ]


def writeout_async(frames: np.ndarray, mapping: AddressSpace, page: Page) -> int:
    """``writeout()`` as v6.1–v6.15 do it: ``->writepage`` with WB_SYNC_NONE, the page clean
    at submission. A write that fails completes with an error that is **recorded, not
    retried** (``end_buffer_async_write``: ``mark_buffer_write_io_error`` sets BH_Write_EIO
    and ``mapping_set_error`` AS_EIO on the mapping, which the next ``fsync`` reports): the
    block's new contents never reach the disk and the page stays clean. The writes queue up
    with the pass's other writeouts, overlapping their latency on a device that queues
    (:attr:`~hotremove.model.cost.DevicePreset.queue_depth`). Returns requests."""
    ring = page_buffers(page) if page.flags & PG_private else []
    failed: list[int] = []
    requests = submit_block_runs(
        mapping.host.i_sb.s_bdev, dirty_blocks(frames, mapping, page), failed=failed, queued=True
    )
    if failed:
        lost = set(failed)
        for bh in ring:
            if bh.b_blocknr in lost:
                bh.b_state |= BH_Write_EIO
        mapping.set_error(page.index, failed)
    clear_page_dirty(mapping, page)
    return requests


def clear_page_dirty(mapping: AddressSpace, page: Page) -> None:
    """``folio_clear_dirty_for_io`` once nothing on the page is left to write."""
    if page.flags & PG_private and any(
        bh.b_state & (BH_Dirty | BH_JBDDirty) for bh in page_buffers(page)
    ):
        return
    page.flags &= ~PG_dirty
    mapping.clear_dirty_tag(page.index)


def writeout(frames: np.ndarray, mapping: AddressSpace, page: Page) -> int:
    """Write one dirty page synchronously (the fallback's ``writeout()`` + wait); return the
    number of I/O requests. On an I/O error the page and every buffer that was to be written
    stay dirty (nothing is lost: a later write retries) and the error propagates."""
    dirty = (
        [bh for bh in page_buffers(page) if bh.b_state & BH_Dirty]
        if page.flags & PG_private
        else []
    )
    try:
        requests = submit_block_runs(mapping.host.i_sb.s_bdev, dirty_blocks(frames, mapping, page))
    except OSError:
        for bh in dirty:
            bh.b_state |= BH_Dirty
        mapping.tag_dirty(page.index)
        raise
    clear_page_dirty(mapping, page)
    return requests


def filemap_release_folio(mapping: AddressSpace, page: Page) -> bool:
    """``filemap_release_folio``: drop the page's buffers if nothing holds them — through the
    journal's ``try_to_free_buffers`` when the filesystem journals (its heads on clean,
    checkpointed buffers go first), else ``try_to_free_buffers``. A folio state (no
    buffers) is released as fs/iomap/buffered-io.c ``iomap_release_folio`` does: not while
    the page is dirty or under writeback, else detached (``iomap_page_release`` in 6.1,
    ``ifs_free`` since the 6.5 rename of ``iomap_page`` to ``iomap_folio_state``)."""
    if page.flags & PG_private and not page_has_buffers(page):
        if page.flags & (PG_dirty | PG_writeback):
            return False
        detach_page_private(page)
        return True
    journal = mapping.host.i_sb.s_journal
    release = getattr(journal, "try_to_free_buffers", None)
    if release is not None:
        return bool(release(page))
    return try_to_free_buffers(page)


def sync_mapping(frames: np.ndarray, mapping: AddressSpace) -> int:
    """Write every dirty page of one file, merging adjacent blocks across pages: each dirty
    buffer of a page with buffers, each block inside the file of a dirty page without (what
    :func:`dirty_blocks` gives page by page, here for the whole file in array operations —
    a machine's ``sync`` does this for thousands of files)."""
    slots = mapping.i_pages
    indices = slots.cached(mapping.dirty_tags)
    if not len(indices):
        return 0
    mm = slots._mm
    pool = mm.bh_pool
    pfns = slots.pfns(indices)
    flags = mm.flags[pfns]
    private = mm.private_bh[pfns] >= 0  # buffers (a folio state is written as a nobh page)
    members, owners = pool.rings(np.where(private, mm.private_bh[pfns], -1))
    dirty = pool.b_state[members] & BH_Dirty != 0
    bhs, bh_owners = members[dirty], owners[dirty]
    inode = mapping.host
    bs = inode.i_sb.s_blocksize
    per_page = PAGE_SIZE // bs
    nobh = np.flatnonzero(~private & (flags & PG_dirty != 0))
    lblks = indices[nobh, None] * per_page + np.arange(per_page)
    inside = lblks < len(inode.block_map)
    block_map = np.asarray(inode.block_map, np.int64)
    blocknrs = np.concatenate([pool.b_blocknr[bhs], block_map[lblks[inside]]])
    # each block's row in the frames seen as blocks of ``bs`` bytes (buffers sit at
    # multiples of their size): one row gather, not a gather per byte
    rows = np.concatenate(
        [
            pfns[bh_owners] * per_page + pool.b_offset[bhs] // bs,
            (pfns[nobh, None] * per_page + np.arange(per_page))[inside],
        ]
    )
    data = frames.reshape(-1, bs)[rows]
    pool.b_state[bhs] &= np.uint32(~BH_Dirty & 0xFFFFFFFF)  # test_clear_buffer_dirty
    try:
        requests = submit_runs(inode.i_sb.s_bdev, blocknrs, data)
    except OSError:  # nothing is lost: every buffer that was to be written stays dirty
        pool.b_state[bhs] |= np.uint32(BH_Dirty)
        raise
    # clear_page_dirty for every page: no buffer left dirty (or journal-dirty)
    left = pool.b_state[members] & (BH_Dirty | BH_JBDDirty) != 0
    held = np.bincount(owners[left], minlength=len(indices)) > 0
    clean = ~held
    mm.flags[pfns[clean]] &= np.uint32(~PG_dirty & 0xFFFFFFFF)
    mapping.dirty_tags.difference_update(indices[clean].tolist())
    return requests


def start_writeback(machine: Machine, mapping: AddressSpace, page: Page) -> None:
    """A flusher started writing this dirty page (``__block_write_full_folio``): its dirty
    buffers are cleaned and locked for async write, the page goes clean and PG_writeback, and
    the request is issued now. Whoever waits for it (``folio_wait_writeback``,
    ``lock_buffer``) sleeps until it completes: the full request time is charged to the
    waiter, as if the I/O had just started."""
    bdev = mapping.host.i_sb.s_bdev
    bhs = (
        [bh for bh in page_buffers(page) if bh.b_state & BH_Dirty]
        if page.flags & PG_private
        else []
    )
    io_before = machine.clock.io_seconds
    submit_block_runs(bdev, dirty_blocks(machine.memory.frames, mapping, page))
    seconds = machine.clock.io_seconds - io_before
    for bh in bhs:
        bh.b_state |= BH_Lock | BH_Async_Write
    page.flags = (page.flags & ~PG_dirty) | PG_writeback
    mapping.clear_dirty_tag(page.index)
    keys = [page, *bhs]

    def end_page_writeback() -> None:
        machine.clock.io_seconds += seconds
        for bh in bhs:
            bh.b_state &= ~(BH_Lock | BH_Async_Write)  # end_buffer_async_write
        page.flags &= ~PG_writeback
        for key in keys:
            machine.waiters.pop(key, None)

    for key in keys:
        machine.waiters[key] = end_page_writeback


def wait_for_all(machine: Machine) -> None:
    """Let every holder finish: in-flight I/O completes, other tasks drop their buffer locks
    (what sync waits for before it writes)."""
    while machine.waiters:
        key = next(iter(machine.waiters))
        machine.waiters.pop(key)()


__all__ = [
    "Block",
    "clear_page_dirty",
    "dirty_blocks",
    "filemap_release_folio",
    "start_writeback",
    "submit_block_runs",
    "sync_mapping",
    "wait_for_all",
    "writeout",
    "writeout_async",
]
