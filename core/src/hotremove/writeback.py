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
from hotremove.model.page import PAGE_SIZE, Page, PG_dirty, PG_private, PG_writeback

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
    ordered = sorted(blocks, key=lambda b: b[0])
    if not ordered:
        return 0
    current().might_sleep("submit_bio_wait")
    runs: list[tuple[int, list[np.ndarray]]] = []
    for blocknr, data in ordered:
        if runs and blocknr == runs[-1][0] + len(runs[-1][1]):
            runs[-1][1].append(data)
        else:
            runs.append((blocknr, [data]))
    for start, run in runs:
        try:
            bdev.submit_write(start, np.concatenate(run).tobytes(), queued=queued)
        except OSError:
            if failed is None:
                raise
            failed.extend(range(start, start + len(run)))
    return len(runs)


def dirty_blocks(frames: np.ndarray, mapping: AddressSpace, page: Page) -> list[Block]:
    """The page's dirty blocks, cleaning their dirty bits (``test_clear_buffer_dirty``).

    A page with buffers writes only its dirty buffers. A page without buffers (``nobh``)
    writes every block that lies inside the file, found through the inode's block map.
    """
    frame = frames[page.pfn]
    if page.flags & PG_private:
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
    (:attr:`~hotremove.cost.DevicePreset.queue_depth`). Returns requests."""
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
    checkpointed buffers go first), else ``try_to_free_buffers``."""
    journal = mapping.host.i_sb.s_journal
    release = getattr(journal, "try_to_free_buffers", None)
    if release is not None:
        return bool(release(page))
    return try_to_free_buffers(page)


def sync_mapping(frames: np.ndarray, mapping: AddressSpace) -> int:
    """Write every dirty page of one file, merging adjacent blocks across pages."""
    blocks: list[Block] = []
    pages = [mapping.i_pages[i] for i in sorted(mapping.dirty_tags) if i in mapping.i_pages]
    dirty = [
        bh
        for page in pages
        if page.flags & PG_private
        for bh in page_buffers(page)
        if bh.b_state & BH_Dirty
    ]
    for page in pages:
        blocks.extend(dirty_blocks(frames, mapping, page))
    try:
        requests = submit_block_runs(mapping.host.i_sb.s_bdev, blocks)
    except OSError:  # nothing is lost: every buffer that was to be written stays dirty
        for bh in dirty:
            bh.b_state |= BH_Dirty
        raise
    for page in pages:
        clear_page_dirty(mapping, page)
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
