"""Read files back from an unmounted minix v3 image, from its own metadata only.

This is how verification learns what the image holds, so it shares nothing with the writer
(:mod:`hotremove_minix.mkfs`) but the format's constants: it parses the super block, finds
the root directory through inode 1, looks each name up in the directory's 64-byte entries
and follows the inode's zone tree — 7 direct zones, then the single, double and triple
indirect blocks, depth first — as fs/minix/itree_common.c ``get_block`` resolves a file's
blocks. Anything that does not add up (a bad magic, a zone outside the data area, a name
that is not there) is a one-line :class:`~hotremove.errors.ImageError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hotremove.errors import ImageError
from hotremove.fs.fstype import FileMap
from hotremove_minix.layout import (
    BLOCK_SIZE,
    DIRENT_SIZE,
    DIRENT_V3,
    INODE_SIZE,
    INODE_V2,
    MAGIC_V3,
    ROOT_INO,
    S_IFDIR,
    SUPER_V3,
    ZONE_BLOCK,
)

_S_IFMT = 0o170000


@dataclass(frozen=True)
class RawInode:
    ino: int
    mode: int
    size: int
    zones: tuple[int, ...]


class MinixImage:
    """An open minix v3 image (read-only)."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self.f, self.name = f, name
        f.seek(BLOCK_SIZE)
        raw = f.read(SUPER_V3.size)
        if len(raw) < SUPER_V3.size:
            raise ImageError(f"{name}: too short for a minix super block")
        (ninodes, _, imap, zmap, first_zone, log_zone, _, _, zones, magic, _, bsize, _) = (
            SUPER_V3.unpack(raw)
        )
        if magic != MAGIC_V3:
            raise ImageError(f"{name}: not a minix v3 filesystem (magic {magic:#06x})")
        if bsize != BLOCK_SIZE or log_zone != 0:
            raise ImageError(f"{name}: blocks of {bsize} bytes, zones 2^{log_zone}: unsupported")
        self.ninodes, self.first_zone, self.zones = ninodes, first_zone, zones
        self.inode_table = (2 + imap + zmap) * BLOCK_SIZE

    def block(self, zone: int) -> bytes:
        if not self.first_zone <= zone < self.zones:
            raise ImageError(
                f"{self.name}: zone {zone} outside the data zones "
                f"{self.first_zone}…{self.zones - 1}"
            )
        return self._read(zone * BLOCK_SIZE, BLOCK_SIZE, f"zone {zone}")

    def _read(self, at: int, size: int, what: str) -> bytes:
        self.f.seek(at)
        raw = self.f.read(size)
        if len(raw) < size:
            raise ImageError(f"{self.name}: the image ends before {what}")
        return raw

    def inode(self, ino: int) -> RawInode:
        if not 1 <= ino <= self.ninodes:
            raise ImageError(f"{self.name}: inode {ino} outside 1…{self.ninodes}")
        raw = self._read(self.inode_table + (ino - 1) * INODE_SIZE, INODE_SIZE, f"inode {ino}")
        mode, _, _, _, size, _, _, _, *zones = INODE_V2.unpack(raw)
        return RawInode(ino, mode, size, tuple(zones))

    def zone_map(self, inode: RawInode) -> list[int]:
        """The zone of each logical block of ``inode`` (0: a hole), in order."""
        count = -(-inode.size // BLOCK_SIZE)
        found: list[int] = []
        roots = [(zone, 0) for zone in inode.zones[:7]]
        roots += [(inode.zones[7], 1), (inode.zones[8], 2), (inode.zones[9], 3)]
        for zone, depth in roots:
            if len(found) >= count:
                break
            found.extend(self._subtree(zone, depth, count - len(found)))
        return found[:count]

    def _subtree(self, zone: int, depth: int, want: int) -> Iterator[int]:
        """Up to ``want`` data zones below ``zone``, an indirect block of ``depth`` levels."""
        if depth == 0:
            yield zone
            return
        span = (BLOCK_SIZE // 4) ** depth
        if zone == 0:  # a hole as large as the whole subtree
            yield from [0] * min(want, span)
            return
        for child in ZONE_BLOCK.unpack(self.block(zone)):
            if want <= 0:
                return
            below = list(self._subtree(child, depth - 1, want))
            want -= len(below)
            yield from below

    def read(self, inode: RawInode) -> bytes:
        parts = [self.block(z) if z else bytes(BLOCK_SIZE) for z in self.zone_map(inode)]
        return b"".join(parts)[: inode.size]

    def root_entries(self) -> dict[str, int]:
        """Name → inode number of every entry of the root directory but ``.`` and ``..``."""
        root = self.inode(ROOT_INO)
        if root.mode & _S_IFMT != S_IFDIR:
            raise ImageError(f"{self.name}: inode {ROOT_INO} is not a directory")
        raw = self.read(root)
        entries: dict[str, int] = {}
        for at in range(0, len(raw) - DIRENT_SIZE + 1, DIRENT_SIZE):
            ino, name = DIRENT_V3.unpack_from(raw, at)
            if ino:
                text = name.split(b"\0", 1)[0].decode(errors="surrogateescape")
                if text not in (".", ".."):
                    entries[text] = ino
        return entries

    def lookup(self, entries: dict[str, int], path: str) -> RawInode:
        if path not in entries:
            raise ImageError(f"{self.name}: no file {path!r} in the root directory")
        return self.inode(entries[path])


def open_image(image: Path) -> tuple[BinaryIO, str]:
    try:
        return image.open("rb"), image.name
    except OSError as exc:
        raise ImageError(f"cannot read {image}: {exc.strerror}") from None


def map_files(image: Path, paths: Sequence[str]) -> dict[str, FileMap]:
    f, name = open_image(image)
    with f:
        img = MinixImage(f, name)
        entries = img.root_entries()
        maps: dict[str, FileMap] = {}
        for path in paths:
            inode = img.lookup(entries, path)
            zones = img.zone_map(inode)
            if 0 in zones:
                hole = zones.index(0)
                raise ImageError(f"{name}: {path} has a hole at block {hole}: not mappable")
            maps[path] = FileMap(inode.size, tuple(zones))
        return maps


def read_files(image: Path, paths: Sequence[str]) -> dict[str, bytes]:
    f, name = open_image(image)
    with f:
        img = MinixImage(f, name)
        entries = img.root_entries()
        return {path: img.read(img.lookup(entries, path)) for path in paths}
