"""The golden model: what every file and anonymous page must hold once everything is
written back, kept apart from the simulated kernel (verification compares against it).

A file the builder generated is not held as a second copy of its bytes: its contents are
made again from the generator's seed when asked for (``GoldenFiles.add_generated``), and the
workload's writes are kept as patches: positions, lengths, and the generator state their bytes
were drawn from. That is what lets a 16 GiB page cache be simulated on a 24 GiB host: the
golden model costs a few bytes per write, not the files nor the written bytes. Files given
as bytes (``files[key] = data``: the synthesizer, small tests) are held as they are and
change in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field

import numpy as np

Key = tuple[str, str]  # (filesystem name, path)


#: a write's bytes: given, or made again on demand (``Callable[[], bytes]``)
Data = bytes | Callable[[], bytes]


@dataclass
class _Generated:
    """A file made again on demand: ``make()`` gives the bytes as generated, then every
    patch (positions, lengths, bytes laid end to end) is applied in order."""

    make: Callable[[], bytearray]
    size: int
    patches: list[tuple[np.ndarray, np.ndarray, Data]] = field(default_factory=list)


class GoldenFiles(MutableMapping[Key, bytearray]):
    """(fs, path) → what the file must hold. ``files[key]`` of a generated file is a fresh
    bytearray each time (change it through :meth:`write`); of a file given as bytes, the
    very buffer."""

    def __init__(self) -> None:
        self._entries: dict[Key, bytearray | _Generated] = {}

    def add_generated(self, key: Key, make: Callable[[], bytearray], size: int) -> None:
        """Register a file whose bytes ``make()`` produces (deterministically, each call)."""
        self._entries[key] = _Generated(make, size)

    def write(self, key: Key, positions: np.ndarray, lengths: np.ndarray, data: Data) -> None:
        """The workload's ``write()`` s into one file: ``lengths[i]`` bytes at
        ``positions[i]``, taken in order from ``data`` — bytes, or a function that makes
        them again (a generator's saved state: then a 16 GiB page cache's writes cost the
        golden model their positions, not their gigabytes)."""
        entry = self._entries[key]
        if isinstance(entry, _Generated):
            entry.patches.append((positions, lengths, data))
        else:
            _apply(entry, positions, lengths, data if isinstance(data, bytes) else data())

    def size(self, key: Key) -> int:
        """The file's length, without making its bytes."""
        entry = self._entries[key]
        return entry.size if isinstance(entry, _Generated) else len(entry)

    def hold(self) -> GoldenFiles:
        """Hold every file's bytes from now on, so that ``files[key]`` is the very buffer
        (the explorer's actors change files in place); returns ``self``."""
        for key in self._entries:
            self._entries[key] = self[key]
        return self

    def __getitem__(self, key: Key) -> bytearray:
        entry = self._entries[key]
        if not isinstance(entry, _Generated):
            return entry
        data = entry.make()
        for positions, lengths, chunk in entry.patches:
            _apply(data, positions, lengths, chunk if isinstance(chunk, bytes) else chunk())
        return data

    def __setitem__(self, key: Key, value: bytearray) -> None:
        self._entries[key] = value

    def __delitem__(self, key: Key) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _apply(target: bytearray, positions: np.ndarray, lengths: np.ndarray, data: bytes) -> None:
    source = memoryview(data)
    done = 0
    for pos, length in zip(positions.tolist(), lengths.tolist(), strict=True):
        target[pos : pos + length] = source[done : done + length]
        done += length


@dataclass
class Golden:
    """What must be true after a sync, kept apart from the simulated kernel."""

    files: GoldenFiles = field(default_factory=GoldenFiles)
    anon: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (vma, vpn) → digest
    #: the workload's write()s per call, in order: (fs, path, positions, lengths) arrays
    writes: list[tuple[str, str, np.ndarray, np.ndarray]] = field(default_factory=list)

    def iter_writes(self) -> Iterator[tuple[str, str, int, int]]:
        """Every write() the workload made, in order: (fs, path, position, length). The bytes
        are the final ones in ``files`` (a real-kernel guest replays exactly these)."""
        for fs, path, positions, lengths in self.writes:
            for pos, length in zip(positions.tolist(), lengths.tolist(), strict=True):
                yield fs, path, pos, length


def digest(data: np.ndarray | bytes) -> bytes:
    return hashlib.blake2b(bytes(data), digest_size=16).digest()
