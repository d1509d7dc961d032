"""A minimal ``newc`` cpio writer: the initramfs format the kernel unpacks into rootfs.

Written here rather than shelling out to cpio(1) so the archive is reproducible (fixed
inode numbers and times) and the host needs one program fewer.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path

#: Every entry's mtime (the kernel does not care; a fixed value keeps archives reproducible).
MTIME = 1_000_000_000


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file or a symlink (``data`` = target)."""

    name: str
    mode: int
    data: bytes = b""


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def regular(name: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc(entries: list[Entry]) -> bytes:
    """The archive's bytes: each header is 110 ASCII bytes, name and data 4-byte aligned,
    ending with the ``TRAILER!!!`` entry the kernel's unpacker stops at."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.lstrip("/").encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        fields = (ino, entry.mode, 0, 0, nlink, MTIME, len(entry.data), 0, 0, 0, 0, len(name), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += header + name + _pad(len(header) + len(name))
        out += entry.data + _pad(len(entry.data))
    return bytes(out)


def write_gzip(path: Path, entries: list[Entry]) -> None:
    """``path`` ← the gzip-compressed archive (every Debian kernel unpacks gzip)."""
    path.write_bytes(gzip.compress(newc(entries), compresslevel=6, mtime=0))
