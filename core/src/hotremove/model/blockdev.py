"""A block device over a real image file, with I/O accounting and a cost model.

Every block the simulated kernel writes goes through :meth:`BlockDevice.submit_write` (or,
for many requests at once, :meth:`BlockDevice.submit_writes`), lands in the image file at
``blocknr * block_size`` and is counted: the counts and the simulated
seconds are what ``hotremove compare`` shows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hotremove.model.cost import DevicePreset, SimClock


class BlockIOError(OSError):
    """A block write failed (the simulated device returned an I/O error)."""

    def __init__(self, where: str) -> None:
        super().__init__(errno.EIO, f"I/O error writing {where}")


@dataclass
class IOStats:
    """Counters in the spirit of /sys/block/*/stat."""

    read_requests: int = 0
    write_requests: int = 0
    blocks_written: int = 0
    bytes_written: int = 0
    journal_requests: int = 0
    journal_bytes: int = 0
    #: request size → count, data and journal writes alike: lets a report re-cost the same
    #: I/O on another device preset
    write_sizes: Counter[int] = field(default_factory=Counter)

    def add(self, other: IOStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class BlockDevice:
    """``struct block_device`` for one filesystem image."""

    def __init__(
        self,
        path: Path,
        block_size: int,
        preset: DevicePreset,
        clock: SimClock,
        machine_stats: IOStats,
        source: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.block_size = block_size
        self.preset = preset
        self.clock = clock
        self.stats = IOStats()
        self._machine_stats = machine_stats
        #: Copy-on-write: a cached image is shared read-only until the first write (or
        #: :meth:`materialise`) copies it to ``path`` — building a large machine then costs
        #: no image copy, and a run that writes nothing pays it only when verified.
        self.source = Path(source) if source is not None else None
        self._fd = os.open(self.source or self.path, os.O_RDONLY if self.source else os.O_RDWR)
        #: Fault injection: when set and it returns True, the next data write fails (-EIO).
        self.fault: Callable[[], bool] | None = None
        self._copy: Future[object] | None = None  # see start_copy

    def __repr__(self) -> str:
        return f"<BlockDevice {self.path.name} bs={self.block_size}>"

    @property
    def nr_blocks(self) -> int:
        """The device's size in filesystem blocks (``bdev_nr_sectors`` / block size)."""
        return os.fstat(self._fd).st_size // self.block_size

    @property
    def _copy_path(self) -> Path:
        """Where the image copy is written before it replaces ``path`` (same directory)."""
        return self.path.with_name(f".{self.path.name}.tmp")

    def start_copy(self) -> None:
        """Begin copying the shared ``source`` to this device's own image in a thread (the
        copy runs in the kernel: ``sendfile``, no GIL), so that :meth:`materialise` — at the
        first write or before verification — finds it done or nearly: a run's simulation
        and its image copy overlap instead of adding up."""
        if self.source is not None and self._copy is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-copy")
            self._copy = pool.submit(shutil.copyfile, self.source, self._copy_path)
            pool.shutdown(wait=False)  # the thread ends with the copy

    def materialise(self) -> Path:
        """Give the device its own image at ``path`` (copied from the shared ``source``)."""
        if self.source is not None:
            if self._copy is not None:
                self._copy.result()  # the copy start_copy began (its error, if any, here)
                self._copy = None
            else:
                shutil.copyfile(self.source, self._copy_path)
            os.replace(self._copy_path, self.path)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDWR)
            self.source = None
        return self.path

    def read_block(self, blocknr: int) -> bytes:
        self.stats.read_requests += 1
        self._machine_stats.read_requests += 1
        return os.pread(self._fd, self.block_size, blocknr * self.block_size)

    def submit_write(
        self, blocknr: int, data: bytes | memoryview, *, queued: bool = False
    ) -> float:
        """Write ``data`` (whole blocks, contiguous on disk) as one request; return its cost.
        ``queued``: asynchronous writeback, overlapping the other requests in the queue."""
        nbytes = len(data)
        if nbytes % self.block_size:
            raise ValueError(f"partial block write of {nbytes} bytes")
        if self.fault is not None and self.fault():
            raise BlockIOError(f"{self.path.name} block {blocknr}")
        if self.source is not None:
            self.materialise()
        written = os.pwrite(self._fd, data, blocknr * self.block_size)
        if written != nbytes:
            raise OSError(f"short write to {self.path}")
        seconds = self.preset.request_seconds(nbytes, queued=queued)
        for stats in (self.stats, self._machine_stats):
            stats.write_requests += 1
            stats.blocks_written += nbytes // self.block_size
            stats.bytes_written += nbytes
            stats.write_sizes[nbytes] += 1
        self.clock.charge_io(seconds)
        return seconds

    def submit_writes(
        self, starts: list[int], bounds: list[int], data: np.ndarray, *, queued: bool = False
    ) -> int:
        """:meth:`submit_write` for many requests in one call: request ``i`` writes the
        block-sized rows ``data[bounds[i]:bounds[i + 1]]`` at block ``starts[i]``. The same
        bytes land in the image, the same counts and request sizes are added (sizes in the
        order the requests first use them) and each request's cost is charged to the clock in
        request order — what one :meth:`submit_write` per request leaves, without its Python
        call per request (a flusher pass writes tens of thousands). Only without a
        :attr:`fault` injector (it decides request by request): the caller checks. A failing
        ``pwrite`` raises after the requests before it were counted, as one by one. Returns
        the requests written."""
        if self.fault is not None:
            raise AssertionError("submit_writes with a fault injector: submit one by one")
        if not starts:
            return 0
        bs = self.block_size
        if data.shape[1:] != (bs,) or not data.flags.c_contiguous:
            raise ValueError(f"submit_writes needs contiguous rows of {bs} bytes")
        if self.source is not None:
            self.materialise()
        flat = memoryview(data.reshape(-1))
        fd, pwrite = self._fd, os.pwrite
        done = 0
        try:
            for start, a, b in zip(starts, bounds[:-1], bounds[1:], strict=True):
                nbytes = (b - a) * bs
                if pwrite(fd, flat[a * bs : b * bs], start * bs) != nbytes:
                    raise OSError(f"short write to {self.path}")
                done += 1
        finally:
            self._account_writes(np.diff(np.asarray(bounds[: done + 1], np.int64)) * bs, queued)
        return done

    def _account_writes(self, sizes: np.ndarray, queued: bool) -> None:
        """The bookkeeping of :meth:`submit_write` for requests of ``sizes`` bytes, in order."""
        if not len(sizes):
            return
        kinds, first, counts = np.unique(sizes, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        kinds, counts = kinds[order].tolist(), counts[order].tolist()
        nbytes = int(sizes.sum())
        for stats in (self.stats, self._machine_stats):
            stats.write_requests += len(sizes)
            stats.blocks_written += nbytes // self.block_size
            stats.bytes_written += nbytes
            for size, n in zip(kinds, counts, strict=True):
                stats.write_sizes[size] += n
        cost = {size: self.preset.request_seconds(size, queued=queued) for size in kinds}
        clock = self.clock
        for size in sizes.tolist():  # one addition per request, in order: the same float sum
            clock.charge_io(cost[size])

    def account_journal_write(self, nblocks: int) -> float:
        """One sequential write of ``nblocks`` to the journal log. Its bytes are not kept (the
        log is replayed by nobody: checkpoint writes the real blocks home), its cost is."""
        nbytes = nblocks * self.block_size
        seconds = self.preset.request_seconds(nbytes)
        for stats in (self.stats, self._machine_stats):
            stats.journal_requests += 1
            stats.journal_bytes += nbytes
            stats.write_sizes[nbytes] += 1
        self.clock.charge_io(seconds)
        return seconds

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._copy is not None:  # a copy nobody needed: let it end, leave no temp file
            with contextlib.suppress(OSError):
                self._copy.result()
            self._copy = None
            self._copy_path.unlink(missing_ok=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
