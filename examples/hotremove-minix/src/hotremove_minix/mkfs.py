"""Make a minix v3 image holding given files: ``mkfs.minix -3`` lays out the empty
filesystem, then this module writes the files into it the way Linux's minix driver would
have written them one after the other.

``mkfs.minix`` has no option to copy files in (unlike ``mke2fs -d``), so the writer does what
fs/minix does on ``creat`` + ``write``: it takes the lowest free inode and, block by block,
the lowest free zone (``minix_new_inode``/``minix_new_block`` search the bitmaps from the
start), allocating each missing indirect block just before the data block that needs it
(fs/minix/itree_common.c ``alloc_branch``); then it appends the files' entries to the root
directory, growing it the same way. Reading them back is :mod:`hotremove_minix.reader`'s job,
which shares none of this bookkeeping.

Reproducible: ``mkfs.minix`` stamps the root inode with ``time(NULL)`` and the caller's uid and
gid (util-linux 2.38's disk-utils/mkfs.minix.c ``make_root_inode_v2_v3``; only its test
build reads a fixed time from the environment) and v3 has no UUID or serial; the writer sets
those fields to :data:`TIMESTAMP` and root, so equal inputs give equal bytes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_minix.layout import (
    BLOCK_SIZE,
    DIRECT,
    DIRENT_SIZE,
    DIRENT_V3,
    INODE_SIZE,
    INODE_V2,
    MAX_FILE_SIZE,
    NAME_LEN,
    PER_BLOCK,
    ROOT_INO,
    S_IFDIR,
    S_IFREG,
    SUPER_V3,
    ZONE_BLOCK,
    Geometry,
)

#: every inode's atime/mtime/ctime: 2004-07-15 00:00 UTC, the day of the seed's mail
TIMESTAMP = 1089849600
FILE_MODE = S_IFREG | 0o644


class Bitmap:
    """One of the image's bitmaps, allocated lowest-free-first like the driver's
    ``minix_find_first_zero_bit`` search."""

    def __init__(self, data: bytearray, base: int, limit: int) -> None:
        self.data, self.base, self.limit = data, base, limit
        self._cursor = 1  # bit 0 is reserved in both maps

    def take(self, what: str) -> int:
        """The lowest free item (inode number, or zone number for the zone map), now used."""
        bit = self._cursor
        while bit < self.limit and self.data[bit >> 3] & (1 << (bit & 7)):
            bit += 1
        if bit >= self.limit:
            raise ImageError(f"minix image is full: no free {what} left")
        self.data[bit >> 3] |= 1 << (bit & 7)
        self._cursor = bit + 1
        return self.base + bit


def zone_path(block: int) -> tuple[int, ...]:
    """fs/minix/itree_v2.c ``block_to_path``: the ``i_zone`` slot, then the index in each
    indirect block, for logical block ``block``."""
    if block < DIRECT:
        return (block,)
    block -= DIRECT
    if block < PER_BLOCK:
        return (DIRECT, block)
    block -= PER_BLOCK
    if block < PER_BLOCK**2:
        return (DIRECT + 1, block // PER_BLOCK, block % PER_BLOCK)
    block -= PER_BLOCK**2
    return (DIRECT + 2, block // PER_BLOCK**2, block // PER_BLOCK % PER_BLOCK, block % PER_BLOCK)


class Writer:
    """Fills an empty image that ``mkfs.minix -3`` made (opened read-write as ``fd``)."""

    def __init__(self, fd: int, geometry: Geometry) -> None:
        self.fd, self.geo = fd, geometry
        self._imap_at = 2 * BLOCK_SIZE
        self._zmap_at = self._imap_at + geometry.imap_blocks * BLOCK_SIZE
        self._itable_at = self._zmap_at + geometry.zmap_blocks * BLOCK_SIZE
        imap = bytearray(os.pread(fd, geometry.imap_blocks * BLOCK_SIZE, self._imap_at))
        zmap = bytearray(os.pread(fd, geometry.zmap_blocks * BLOCK_SIZE, self._zmap_at))
        self.inodes = Bitmap(imap, 0, geometry.inodes + 1)
        # zone z is bit z - first_zone + 1 (mkfs.minix.c mark_zone, fs/minix/bitmap.c)
        self.zones = Bitmap(zmap, geometry.first_zone - 1, geometry.data_zones + 1)

    # -- blocks -------------------------------------------------------------------------
    def _write_tree(self, zones: list[int], nblocks: int, first: int | None = None) -> list[int]:
        """Allocate ``nblocks`` data blocks (the first one given, if ``first``) with their
        indirect blocks in the order ``alloc_branch`` would, fill ``zones`` (the inode's
        ``i_zone``), write the indirect blocks, and return the data blocks in logical order."""
        nodes: dict[tuple[int, ...], tuple[int, list[int]]] = {}
        data: list[int] = []
        for logical in range(nblocks):
            path = zone_path(logical)
            for depth in range(1, len(path)):
                if path[:depth] not in nodes:
                    block = self.zones.take("zone")
                    self._point(zones, nodes, path[:depth], block)
                    nodes[path[:depth]] = (block, [0] * PER_BLOCK)
            block = first if logical == 0 and first else self.zones.take("zone")
            self._point(zones, nodes, path, block)
            data.append(block)
        for block, pointers in nodes.values():
            os.pwrite(self.fd, ZONE_BLOCK.pack(*pointers), block * BLOCK_SIZE)
        return data

    @staticmethod
    def _point(zones: list[int], nodes: dict, path: tuple[int, ...], block: int) -> None:
        if len(path) == 1:
            zones[path[0]] = block
        else:
            nodes[path[:-1]][1][path[-1]] = block

    def _write_data(self, blocks: list[int], data: bytes) -> None:
        """``data`` into ``blocks``, one ``pwrite`` per run of adjacent blocks."""
        start = 0
        while start < len(blocks):
            end = start + 1
            while end < len(blocks) and blocks[end] == blocks[end - 1] + 1:
                end += 1
            chunk = data[start * BLOCK_SIZE : end * BLOCK_SIZE]
            os.pwrite(self.fd, chunk, blocks[start] * BLOCK_SIZE)
            start = end

    def _write_inode(self, ino: int, mode: int, nlinks: int, size: int, zones: list[int]) -> None:
        raw = INODE_V2.pack(mode, nlinks, 0, 0, size, TIMESTAMP, TIMESTAMP, TIMESTAMP, *zones)
        os.pwrite(self.fd, raw, self._itable_at + (ino - 1) * INODE_SIZE)

    # -- files ----------------------------------------------------------------------------
    def add_file(self, name: str, data: bytes) -> tuple[bytes, int]:
        """One regular file; returns its encoded name and inode number."""
        encoded = name.encode()
        if not encoded or len(encoded) > NAME_LEN or b"/" in encoded or b"\0" in encoded:
            raise ImageError(
                f"minix: cannot store {name!r}: a name in the root directory of 1 to "
                f"{NAME_LEN} bytes without '/' or NUL"
            )
        if len(data) > MAX_FILE_SIZE:
            raise ImageError(f"minix: {name} is larger than the largest minix file (2 GiB - 1)")
        ino = self.inodes.take("inode")
        zones = [0] * 10
        blocks = self._write_tree(zones, -(-len(data) // BLOCK_SIZE))
        self._write_data(blocks, data)
        self._write_inode(ino, FILE_MODE, 1, len(data), zones)
        return encoded, ino

    def write_root(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """The root directory: ``.``, ``..`` and ``entries``, keeping the zone mkfs gave it."""
        table = [(b".", ROOT_INO), (b"..", ROOT_INO), *entries]
        raw = b"".join(DIRENT_V3.pack(ino, name) for name, ino in table)
        root = INODE_V2.unpack(os.pread(self.fd, INODE_SIZE, self._itable_at))
        zones = [0] * 10
        blocks = self._write_tree(zones, -(-len(raw) // BLOCK_SIZE), first=root[8])
        self._write_data(blocks, raw)
        self._write_inode(ROOT_INO, S_IFDIR | 0o755, 2, len(table) * DIRENT_SIZE, zones)

    def finish(self) -> None:
        os.pwrite(self.fd, bytes(self.inodes.data), self._imap_at)
        os.pwrite(self.fd, bytes(self.zones.data), self._zmap_at)


def read_geometry(fd: int) -> Geometry:
    """The layout mkfs wrote, from its super block."""
    sb = SUPER_V3.unpack(os.pread(fd, SUPER_V3.size, BLOCK_SIZE))
    ninodes, _, imap, zmap, first_zone, _, _, _, zones = sb[:9]
    return Geometry(zones, ninodes, imap, zmap, first_zone)


def make_image(mkfs: str, image: Path, size: int, files: Mapping[str, bytes]) -> None:
    """Create ``image`` (``size`` bytes) holding ``files``, or leave nothing behind."""
    blocks = size // BLOCK_SIZE
    inodes = 0
    if len(files) + 1 > Geometry.for_image(blocks).inodes:
        inodes = len(files) + 1  # the default (one per 3 blocks) is too few: ask for enough
    fd_tmp, tmp_name = tempfile.mkstemp(prefix=f".{image.name}.", dir=image.parent)
    tmp = Path(tmp_name)
    try:
        os.ftruncate(fd_tmp, size)
        os.close(fd_tmp)
        args = [mkfs, "-3", *(["-i", str(inodes)] if inodes else []), str(tmp), str(blocks)]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            reason = said[-1] if said else f"exit status {proc.returncode}"
            raise ImageError(f"mkfs.minix failed for {image.name}: {reason}")
        fd = os.open(tmp, os.O_RDWR)
        try:
            writer = Writer(fd, read_geometry(fd))
            entries = [writer.add_file(name, data) for name, data in files.items()]
            writer.write_root(entries)
            writer.finish()
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(image)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
