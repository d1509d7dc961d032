"""Dead frames are given back to the host by a worker thread: before a block is handed out
again (back online) or written over, every queued release is done — a late MADV_DONTNEED
never zeroes live data."""

from __future__ import annotations

import numpy as np

from hotremove.model import hostmem
from hotremove.model.memory import ISOLATED, ONLINE, PhysicalMemory
from hotremove.model.page import PAGE_SIZE


def _nonzero_frames(memory: PhysicalMemory, start: int, end: int) -> int:
    """Frames of ``start .. end - 1`` holding anything (a released frame reads as zeros)."""
    return int(memory.frames[start:end].any(axis=1).sum())


def test_released_frames_read_as_zeros_once_the_block_is_back_online():
    memory = PhysicalMemory(8 << 20, 4 << 20)
    block = memory.blocks[1]
    memory.frames[block.start_pfn : block.end_pfn] = 0xA5
    memory.set_block_state(1, ISOLATED)
    memory.release(np.arange(block.start_pfn, block.start_pfn + 64, dtype=np.int64))
    memory.release(np.arange(block.start_pfn + 128, block.end_pfn, dtype=np.int64))
    memory.set_block_state(1, ONLINE)  # drains the releases first
    assert _nonzero_frames(memory, block.start_pfn, block.start_pfn + 64) == 0
    assert _nonzero_frames(memory, block.start_pfn + 64, block.start_pfn + 128) == 64
    assert (memory.frames[block.start_pfn + 64 : block.start_pfn + 128] == 0xA5).all()
    assert _nonzero_frames(memory, block.start_pfn + 128, block.end_pfn) == 0
    memory.frames[block.start_pfn : block.end_pfn] = 0x5A  # handed out and written again
    hostmem.drain()
    assert (memory.frames[block.start_pfn : block.end_pfn] == 0x5A).all(), "no late release"


def test_a_queued_release_keeps_its_mapping_alive():
    memory = PhysicalMemory(4 << 20, 4 << 20)
    memory.frames[:] = 1
    memory.release(np.arange(memory.nr_pages, dtype=np.int64))
    frames = memory.frames
    del memory  # the queued job holds the frames: nothing is unmapped under it
    hostmem.drain()
    assert frames.shape[1] == PAGE_SIZE and not frames.any()
