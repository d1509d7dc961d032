"""Giving dead frames' host memory back off the migration's path.

A migrated page's old frame is dead: the block it sits in is isolated, the allocator hands it
out again only once the block is back online. ``MADV_DONTNEED`` gives its host memory back —
the kernel unmaps and frees the pages, a few hundred microseconds per run of frames — and
nothing has to wait for that. So the calls go to one worker thread, in order, through libc's
``madvise`` (ctypes releases the GIL for the call, which ``mmap.madvise`` does not): the next
batch's array work goes on meanwhile, on the other core. Whoever may hand those frames out
again, or write them (a block back online, the explorer restoring a machine), calls
:func:`drain` first.

The worker and its queue are this module's, not the memory's: the explorer records and
restores every object reachable from a machine, and must not restore a thread pool.
"""

from __future__ import annotations

import ctypes
import mmap
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from hotremove.model.page import PAGE_SIZE


def _libc_madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # no libc madvise: the caller advises in line
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


_MADVISE = _libc_madvise()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hostmem-release")
_PENDING: list[Future[None]] = []


def available() -> bool:
    return _MADVISE is not None


def _dontneed(frames: np.ndarray, starts: list[int], ends: list[int]) -> None:
    """The job: it holds ``frames`` (hence the mapping: never unmapped, its addresses never
    reused by another mapping, while a release is queued)."""
    assert _MADVISE is not None
    base = frames.ctypes.data
    for start, end in zip(starts, ends, strict=True):
        _MADVISE(base + start * PAGE_SIZE, (end - start) * PAGE_SIZE, mmap.MADV_DONTNEED)


def release_async(frames: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """``MADV_DONTNEED`` of frame runs ``starts[i] .. ends[i] - 1`` of ``frames``, soon."""
    _PENDING.append(_WORKER.submit(_dontneed, frames, starts.tolist(), ends.tolist()))
    while _PENDING and _PENDING[0].done():  # keep the list short
        _PENDING.pop(0).result()


def drain() -> None:
    """Wait until every queued release is done."""
    while _PENDING:
        _PENDING.pop(0).result()
