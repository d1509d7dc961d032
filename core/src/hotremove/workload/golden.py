"""The golden model: what every file and anonymous page must hold once everything is
written back, kept apart from the simulated kernel (verification compares against it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Golden:
    """What must be true after a sync, kept apart from the simulated kernel."""

    files: dict[tuple[str, str], bytearray] = field(default_factory=dict)  # (fs, path) → bytes
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
