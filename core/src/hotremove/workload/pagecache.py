"""The page cache a scenario asks for: frames chosen by placement, file pages read into
them with what their a_ops says a page carries (buffer_heads on the real block numbers, a
filesystem's folio state, or nothing), and ``write()`` into cached pages (dirty buffers,
PG_dirty) — the page cache only, never the image."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from hotremove.errors import WorkloadError
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import BH_Dirty, BH_Mapped, BH_Uptodate, BufferHead
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import (
    PAGE_SIZE,
    FolioState,
    Page,
    PG_dirty,
    PG_lru,
    PG_mappedtodisk,
    PG_private,
    PG_uptodate,
    page_has_buffers,
)
from hotremove.workload.golden import Golden


class FrameAllocator:
    """Where the workload's pages land: ``spread`` (random frames) or ``fill`` (lowest first)."""

    def __init__(self, memory: PhysicalMemory, placement: str, rng: np.random.Generator) -> None:
        self.memory = memory
        self._order = (
            rng.permutation(memory.nr_pages)
            if placement == "spread"
            else np.arange(memory.nr_pages, dtype=np.int64)
        )
        self._pos = 0  # frames before it in the order were taken or found in use

    def alloc(self) -> Page:
        return Page(self.memory.pages, int(self.alloc_many(1)[0]))

    def alloc_many(self, n: int) -> np.ndarray:
        """The next ``n`` free frames in placement order, allocated (one reference each)."""
        free = self.memory.free_map
        order = self._order
        got: list[np.ndarray] = []
        need = n
        while need:
            chunk = order[self._pos : self._pos + need]
            if not len(chunk):
                raise WorkloadError(
                    "memory.size: no free frame left for the workload (more pages than memory)"
                )
            self._pos += len(chunk)
            take = chunk[free[chunk] != 0]
            got.append(take)
            need -= len(take)
        pfns = np.concatenate(got) if got else np.zeros(0, np.int64)
        self.memory.alloc_pages_at(pfns)
        return pfns


def cache_file(
    machine: Machine,
    mapping: AddressSpace,
    data: bytes,
    frames: FrameAllocator,
    rng: np.random.Generator,
    cached: float,
) -> None:
    """Read a share of the file's pages into the page cache, with mapped buffers."""
    inode = mapping.host
    bs = inode.i_sb.s_blocksize
    per_page = PAGE_SIZE // bs
    nr_pages = -(-len(data) // PAGE_SIZE)
    chosen = np.flatnonzero(rng.random(nr_pages) < cached) if cached < 1 else range(nr_pages)
    pfns = frames.alloc_many(len(chosen))  # each one reference: the page cache's
    if not len(pfns):
        return
    chosen = np.asarray(chosen, dtype=np.int64)
    memory = machine.memory
    _read_pages(memory.frames, pfns, chosen, np.frombuffer(data, dtype=np.uint8))
    mm = memory.pages
    mm.flags[pfns] |= PG_uptodate | PG_lru
    mm.index[pfns] = chosen
    mm.mapping_id[pfns] = mm.mapping_index(mapping)
    mapping.i_pages.store_many(chosen, pfns, mm)
    if mapping.a_ops.private == "folio_state":  # folio_attach_private(folio, ifs)
        for pfn in pfns.tolist():
            mm.private[pfn] = FolioState(mapping.a_ops.name)
        mm.refcount[pfns] += 1
        mm.flags[pfns] |= np.uint32(PG_private)
        return
    if not mapping.a_ops.buffers:
        return
    # create_page_buffers for every page at once: a ring per page on the real block numbers
    block_map = np.asarray(inode.block_map, dtype=np.int64)
    logical = chosen[:, None] * per_page + np.arange(per_page)
    blocknrs = np.where(
        logical < len(block_map), block_map[np.minimum(logical, len(block_map) - 1)], -1
    )
    state = BH_Uptodate | BH_Mapped
    mm.private_bh[pfns] = memory.bh_pool.alloc_rings(pfns, bs, blocknrs, state)
    mm.refcount[pfns] += 1  # ->private's reference (folio_attach_private)
    mapped = (blocknrs >= 0).all(axis=1)
    mm.flags[pfns] |= np.where(mapped, PG_private | PG_mappedtodisk, PG_private).astype(np.uint32)


def _read_pages(
    frames: np.ndarray, pfns: np.ndarray, indices: np.ndarray, data: np.ndarray
) -> None:
    """The file's pages ``indices`` into frames ``pfns`` (a page past EOF is zero-filled):
    one memcpy when the frames are consecutive and the pages too, as with ``fill``."""
    whole = len(data) // PAGE_SIZE
    pages = data[: whole * PAGE_SIZE].reshape(whole, PAGE_SIZE)
    inside = indices < whole
    src, dst = indices[inside], pfns[inside]
    n = len(src)
    if n and dst[-1] - dst[0] == n - 1 and src[-1] - src[0] == n - 1:
        frames[dst[0] : dst[0] + n] = pages[src[0] : src[0] + n]
    elif n:
        frames[dst] = pages[src]
    for index, pfn in zip(indices[~inside].tolist(), pfns[~inside].tolist(), strict=True):
        tail = data[index * PAGE_SIZE : (index + 1) * PAGE_SIZE]
        frames[pfn, : len(tail)] = tail
        frames[pfn, len(tail) :] = 0


def dirty_file(
    machine: Machine,
    mapping: AddressSpace,
    golden: Golden,
    rng: np.random.Generator,
    share: float,
    how: str,
) -> None:
    """Write into a share of the cached pages, as write() would: page cache only. With
    ``partial``, each page gets a uniformly random non-empty subset of its mapped buffers.
    Choices and bytes are drawn for the whole file at once."""
    if not mapping.i_pages:
        return
    indices = np.asarray(sorted(mapping.i_pages), dtype=np.int64)
    indices = indices[rng.random(len(indices)) < share]
    if not len(indices):
        return
    mm = machine.memory.pages
    pool = machine.memory.bh_pool
    pfns = mapping.i_pages.pfns(indices)
    has_buffers = mm.private_bh[pfns] >= 0  # a folio state is written like a nobh page
    members, owners = pool.rings(np.where(has_buffers, mm.private_bh[pfns], -1))
    mapped = pool.b_state[members] & BH_Mapped != 0
    members, owners = members[mapped], owners[mapped]
    order = np.lexsort((pool.b_offset[members], owners))  # by page, then place in the page
    members, owners = members[order], owners[order]
    if how == "partial":
        per_page = np.bincount(owners, minlength=len(pfns))
        rank = np.arange(len(owners)) - np.searchsorted(owners, owners)
        masks = np.ones(len(pfns), np.int64)
        several = per_page > 1
        masks[several] = rng.integers(1, 1 << per_page[several])
        keep = (masks[owners] >> rank) & 1 != 0
        members, owners = members[keep], owners[keep]
    nobh = np.flatnonzero(~has_buffers)
    extent_pfns = np.concatenate([pfns[owners], pfns[nobh]])
    offsets = np.concatenate(
        [pool.b_offset[members].astype(np.int64), np.zeros(len(nobh), np.int64)]
    )
    sizes = np.concatenate([pool.b_size[members].astype(np.int64), np.full(len(nobh), PAGE_SIZE)])
    bhs = np.concatenate([members, np.full(len(nobh), -1, np.int64)])
    sb = mapping.host.i_sb
    positions = mm.index[extent_pfns] * PAGE_SIZE + offsets
    lengths = np.minimum(sizes, mapping.host.i_size - positions)
    words = -(-int(lengths.sum()) // 8)
    state = rng.bit_generator.state  # the golden model draws the same bytes again from it
    data = rng.bit_generator.random_raw(words).tobytes()
    write_extents(machine, mapping, extent_pfns, offsets, lengths, bhs, None, data)
    redraw = partial(_redraw, type(rng.bit_generator), state, words)
    golden.files.write((sb.s_id, mapping.host.path), positions, lengths, redraw)
    golden.writes.append((sb.s_id, mapping.host.path, positions, lengths))


def _redraw(kind: type[np.random.BitGenerator], state: dict, words: int) -> bytes:
    """``words`` raw draws of a bit generator put back in ``state``: a write's bytes again."""
    bits = kind()
    bits.state = state
    return bits.random_raw(words).tobytes()


def write_extents(
    machine: Machine,
    mapping: AddressSpace,
    pfns: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    bhs: np.ndarray,
    golden: bytearray | None,
    data: bytes,
) -> None:
    """``write()`` of ``data`` into cached pages, extent by extent (frame ``pfns[i]`` at
    ``offsets[i]``, ``lengths[i]`` bytes, through buffer ``bhs[i]`` or -1 for a page without
    buffers): new bytes in the frames and in ``golden`` (the file's bytes; None when the
    caller records the write in the golden model itself), then the buffers dirtied as the
    filesystem says — through its journal when a plugin attached one (``sb.s_journal``),
    else ``mark_buffer_dirty`` (for many buffers at once: BH_Dirty, PG_dirty, the tag)."""
    frames = memoryview(machine.memory.frames.reshape(-1))
    mm = machine.memory.pages
    source = memoryview(data)
    done = 0
    for pfn, offset, length, pos in zip(
        pfns.tolist(),
        offsets.tolist(),
        lengths.tolist(),
        (mm.index[pfns] * PAGE_SIZE + offsets).tolist(),
        strict=True,
    ):
        chunk = source[done : done + length]
        start = pfn * PAGE_SIZE + offset
        frames[start : start + length] = chunk
        if golden is not None:
            golden[pos : pos + length] = chunk
        done += length
    journal = mapping.host.i_sb.s_journal
    buffered = bhs[bhs >= 0]
    if journal is not None:
        pool = machine.memory.bh_pool
        for index in buffered.tolist():
            journal.dirty_data(BufferHead(pool, index))
        end_write = getattr(journal, "end_write", None)
        if end_write is not None:  # the next write() starts a handle of its own
            end_write()
    else:
        machine.memory.bh_pool.b_state[buffered] |= np.uint32(BH_Dirty)
    mapping.mark_dirtied(machine.clock.now)
    dirty = np.unique(pfns if journal is None else pfns[bhs < 0])
    mm.flags[dirty] |= np.uint32(PG_dirty)
    mapping.dirty_tags.update(mm.index[dirty].tolist())


def page_cache_write(
    machine: Machine,
    mapping: AddressSpace,
    page: Page,
    bhs: list[BufferHead],
    golden: bytearray,
    randbytes: Callable[[int], bytes],
) -> None:
    """``write()`` into one cached page, through ``bhs`` (the whole page when it has no
    buffers), with bytes from ``randbytes`` — the explorer's writer actor."""
    inode = mapping.host
    base = page.index * PAGE_SIZE
    if page_has_buffers(page):
        offsets = [bh.b_offset for bh in bhs]
        lengths = [min(bh.b_size, inode.i_size - base - bh.b_offset) for bh in bhs]
        indices = [bh._bh_index for bh in bhs]
    else:
        offsets, lengths, indices = [0], [min(PAGE_SIZE, inode.i_size - base)], [-1]
    data = b"".join(randbytes(length) for length in lengths)
    write_extents(
        machine,
        mapping,
        np.full(len(offsets), page.pfn, np.int64),
        np.asarray(offsets, np.int64),
        np.asarray(lengths, np.int64),
        np.asarray(indices, np.int64),
        golden,
        data,
    )
