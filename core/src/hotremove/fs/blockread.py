"""Reading file contents straight from an image's blocks, given each file's block map.

A filesystem's own reader (``FilesystemType.read_files``, through its own tools) walks
the on-disk metadata of every file and writes each one somewhere: seconds for a gigabyte of
small files. Here the image is opened once and every file is read with one ``preadv`` per
physically contiguous run of its blocks — the bytes come from the image all the same, and
where they are is the block map the caller gives (verification checks that map against the
image's own metadata, read by ``FilesystemType.map_files``: see :mod:`hotremove.sim.verify`).
Nothing here knows a filesystem: a block is ``block_size`` bytes at ``block * block_size``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class BlockReader:
    """One open image; :meth:`read` gives a file's bytes from its block map."""

    def __init__(self, image: Path, block_size: int) -> None:
        self.image = Path(image)
        self.block_size = block_size
        self._fd = os.open(self.image, os.O_RDONLY)
        self.image_bytes = os.fstat(self._fd).st_size

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, blocks: Sequence[int], size: int) -> bytearray:
        """The first ``size`` bytes stored in ``blocks`` (logical order). A block past the end
        of the image, or a map too short for ``size``, gives fewer bytes (a mismatch to the
        caller, never an exception)."""
        bs = self.block_size
        need = -(-size // bs)
        if need == 0:
            return bytearray()
        phys = np.asarray(blocks[:need], np.int64)
        buf = bytearray(len(phys) * bs)
        view = memoryview(buf)
        # runs of physically consecutive blocks: one system call each
        breaks = np.flatnonzero(np.diff(phys) != 1) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks, [len(phys)])).tolist()
        got = 0
        for lo, hi in zip(starts, ends, strict=True):
            offset = int(phys[lo]) * bs
            want = (hi - lo) * bs
            n = os.preadv(self._fd, [view[lo * bs : hi * bs]], offset) if offset >= 0 else 0
            got += n
            if n != want:  # past the end of the image: the file is short from here on
                break
        view.release()
        del buf[min(got, size) :]  # in place: no copy of the file
        return buf
