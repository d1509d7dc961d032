"""A reader of XFS v5 images written from the on-disk format, sharing nothing with xfsprogs.

This is how ``read_files`` learns what an image holds: it parses the superblock, finds each
inode from its number, decodes the data fork (an extent list in the inode, or a bmap B+tree
of ``BMA3`` blocks), looks names up in directories (short form in the inode, or ``XDB3`` /
``XDD3`` data blocks) and reads the blocks the extents name. xfs_db's ``bmap`` (how
:mod:`hotremove_xfs.bmap` maps files) is not consulted, so a wrong map on either side shows
up as a disagreement. Layouts from fs/xfs/libxfs/xfs_format.h and xfs_da_format.h (Linux
6.x): every integer is big-endian.

Holes and unwritten extents read as zeros, as the kernel returns them. Only v5 (CRC)
filesystems are read: the images hotremove makes, and the only ones Linux ≥ 6.x formats.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hotremove.errors import ImageError

SB_MAGIC = b"XFSB"
DINODE_MAGIC = b"IN"
BMAP_CRC_MAGIC = b"BMA3"  # long-format bmap btree block, v5
DIR3_BLOCK_MAGIC = b"XDB3"  # single-block directory
DIR3_DATA_MAGIC = b"XDD3"  # data block of a leaf/node directory

FMT_LOCAL, FMT_EXTENTS, FMT_BTREE = 1, 2, 3  # xfs_dinode_fmt
DINODE_V3_SIZE = 176  # sizeof(struct xfs_dinode) for di_version 3
BTREE_LBLOCK_CRC_LEN = 72  # XFS_BTREE_LBLOCK_CRC_LEN
DIR3_DATA_HDR_LEN = 64  # sizeof(struct xfs_dir3_data_hdr)
DIFLAG2_NREXT64 = 1 << 4  # XFS_DIFLAG2_NREXT64: 64-bit extent counters
FEAT_INCOMPAT_FTYPE = 1 << 0  # XFS_SB_FEAT_INCOMPAT_FTYPE: a file type byte in dirents
DIR2_LEAF_OFFSET = 1 << 35  # XFS_DIR2_LEAF_OFFSET: directory data lives below 32 GiB
DIR2_DATA_FREE_TAG = 0xFFFF


@dataclass(frozen=True)
class Superblock:
    """The fields of ``struct xfs_dsb`` this reader needs (offsets in comments)."""

    blocksize: int  # sb_blocksize @4
    dblocks: int  # sb_dblocks @8
    rootino: int  # sb_rootino @56
    agblocks: int  # sb_agblocks @84
    agcount: int  # sb_agcount @88
    inodesize: int  # sb_inodesize @104
    inopblog: int  # sb_inopblog @123
    agblklog: int  # sb_agblklog @124
    dirblklog: int  # sb_dirblklog @192
    ftype: bool  # sb_features_incompat @216 & FTYPE

    @classmethod
    def parse(cls, raw: bytes) -> Superblock:
        if raw[:4] != SB_MAGIC:
            raise ImageError("not an XFS filesystem (no XFSB superblock magic)")
        (versionnum,) = struct.unpack_from(">H", raw, 100)
        if versionnum & 0xF != 5:
            raise ImageError(f"XFS version {versionnum & 0xF} filesystem: only v5 is read")
        (incompat,) = struct.unpack_from(">I", raw, 216)
        return cls(
            blocksize=struct.unpack_from(">I", raw, 4)[0],
            dblocks=struct.unpack_from(">Q", raw, 8)[0],
            rootino=struct.unpack_from(">Q", raw, 56)[0],
            agblocks=struct.unpack_from(">I", raw, 84)[0],
            agcount=struct.unpack_from(">I", raw, 88)[0],
            inodesize=struct.unpack_from(">H", raw, 104)[0],
            inopblog=raw[123],
            agblklog=raw[124],
            dirblklog=raw[192],
            ftype=bool(incompat & FEAT_INCOMPAT_FTYPE),
        )


@dataclass(frozen=True)
class Extent:
    """One ``xfs_bmbt_rec``: file blocks ``startoff..`` at image block ``block..``."""

    startoff: int
    block: int  # absolute, in filesystem blocks from the image's start
    count: int
    unwritten: bool


@dataclass(frozen=True)
class Dinode:
    """What this reader needs of one inode: mode, size and its data fork."""

    ino: int
    mode: int
    format: int
    size: int
    nextents: int
    fork: bytes  # the data fork's bytes in the inode (literal area)


class XfsReader:
    """An open image: ``with XfsReader(path) as xfs: xfs.read_file("f00001")``."""

    def __init__(self, image: Path) -> None:
        self.image = Path(image)
        try:
            self._fd = os.open(self.image, os.O_RDONLY)
        except OSError as exc:
            raise ImageError(f"cannot open {image}: {exc.strerror}") from None
        self.sb = Superblock.parse(self._pread(0, 512))
        self._dirs: dict[int, dict[bytes, int]] = {}

    def __enter__(self) -> XfsReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.close(self._fd)

    # -- addresses ----------------------------------------------------------------------
    def _pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise ImageError(f"{self.image}: short read at byte {offset} (truncated image?)")
        return data

    def fsb_to_block(self, fsb: int) -> int:
        """``XFS_FSB_TO_DADDR`` in block units: an fsblock is ``agno << agblklog | agbno``."""
        agno, agbno = fsb >> self.sb.agblklog, fsb & ((1 << self.sb.agblklog) - 1)
        if agno >= self.sb.agcount or agbno >= self.sb.agblocks:
            raise ImageError(f"{self.image}: block pointer {fsb} is outside the filesystem")
        return agno * self.sb.agblocks + agbno

    def read_blocks(self, block: int, count: int) -> bytes:
        bs = self.sb.blocksize
        return self._pread(block * bs, count * bs)

    # -- inodes -------------------------------------------------------------------------
    def inode(self, ino: int) -> Dinode:
        """The inode ``ino`` (``agno | agbno | offset`` bits, as ``XFS_INO_TO_AGNO`` & co)."""
        sb = self.sb
        agino_bits = sb.agblklog + sb.inopblog
        agno, agbno = ino >> agino_bits, (ino >> sb.inopblog) & ((1 << sb.agblklog) - 1)
        slot = ino & ((1 << sb.inopblog) - 1)
        if agno >= sb.agcount or agbno >= sb.agblocks:
            raise ImageError(f"{self.image}: inode number {ino} is outside the filesystem")
        raw = self._pread((agno * sb.agblocks + agbno) * sb.blocksize + slot * sb.inodesize,
                          sb.inodesize)  # fmt: skip
        if raw[:2] != DINODE_MAGIC or raw[4] != 3:
            raise ImageError(f"{self.image}: inode {ino} is not a v3 inode (bad magic/version)")
        (di_ino,) = struct.unpack_from(">Q", raw, 152)
        if di_ino != ino:
            raise ImageError(f"{self.image}: inode {ino} says it is inode {di_ino}")
        (mode,) = struct.unpack_from(">H", raw, 2)
        (flags2,) = struct.unpack_from(">Q", raw, 120)
        if flags2 & DIFLAG2_NREXT64:
            (nextents,) = struct.unpack_from(">Q", raw, 24)
        else:
            (nextents,) = struct.unpack_from(">I", raw, 76)
        forkoff = raw[82]
        end = DINODE_V3_SIZE + forkoff * 8 if forkoff else sb.inodesize
        return Dinode(
            ino=ino,
            mode=mode,
            format=raw[5],
            size=struct.unpack_from(">Q", raw, 56)[0],
            nextents=nextents,
            fork=raw[DINODE_V3_SIZE:end],
        )

    # -- the data fork ------------------------------------------------------------------
    def extents(self, dinode: Dinode) -> list[Extent]:
        """The data fork's extents in file order (extent list or bmap B+tree)."""
        if dinode.format == FMT_EXTENTS:
            found = self._records(dinode.fork, 0, dinode.nextents)
        elif dinode.format == FMT_BTREE:
            found = list(self._bmdr(dinode.fork))
        else:
            raise ImageError(f"{self.image}: inode {dinode.ino} has no extent map")
        if len(found) != dinode.nextents:
            raise ImageError(
                f"{self.image}: inode {dinode.ino} maps {len(found)} extents, "
                f"its core says {dinode.nextents}"
            )
        return sorted(found, key=lambda e: e.startoff)

    def _records(self, raw: bytes, offset: int, count: int) -> list[Extent]:
        """``xfs_bmbt_disk_get_all``: flag:1 | startoff:54 | startblock:52 | blockcount:21."""
        out = []
        for l0, l1 in struct.iter_unpack(">QQ", raw[offset : offset + 16 * count]):
            out.append(
                Extent(
                    startoff=(l0 & ((1 << 63) - 1)) >> 9,
                    block=self.fsb_to_block(((l0 & 0x1FF) << 43) | (l1 >> 21)),
                    count=l1 & ((1 << 21) - 1),
                    unwritten=bool(l0 >> 63),
                )
            )
        if len(out) != count:
            raise ImageError(f"{self.image}: extent list ends early ({len(out)} of {count})")
        return out

    def _bmdr(self, fork: bytes) -> Iterator[Extent]:
        """The B+tree root in the inode (``xfs_bmdr_block``): level, numrecs, keys, ptrs."""
        level, numrecs = struct.unpack_from(">HH", fork, 0)
        maxrecs = (len(fork) - 4) // 16  # xfs_bmdr_maxrecs(): a key and a ptr per record
        for i in range(numrecs):
            (ptr,) = struct.unpack_from(">Q", fork, 4 + maxrecs * 8 + i * 8)
            yield from self._bmbt(ptr, level - 1)

    def _bmbt(self, fsb: int, level: int) -> Iterator[Extent]:
        """One ``BMA3`` block below the root: records at level 0, else pointers down."""
        raw = self.read_blocks(self.fsb_to_block(fsb), 1)
        if raw[:4] != BMAP_CRC_MAGIC:
            raise ImageError(f"{self.image}: bmap btree block {fsb} has no BMA3 magic")
        got_level, numrecs = struct.unpack_from(">HH", raw, 4)
        if got_level != level:
            raise ImageError(f"{self.image}: bmap btree block {fsb} at level {got_level}")
        if level == 0:
            yield from self._records(raw, BTREE_LBLOCK_CRC_LEN, numrecs)
            return
        maxrecs = (len(raw) - BTREE_LBLOCK_CRC_LEN) // 16
        for i in range(numrecs):
            (ptr,) = struct.unpack_from(">Q", raw, BTREE_LBLOCK_CRC_LEN + maxrecs * 8 + i * 8)
            yield from self._bmbt(ptr, level - 1)

    def read_data(self, dinode: Dinode) -> bytes:
        """The file's ``i_size`` bytes; holes and unwritten extents read as zeros."""
        bs = self.sb.blocksize
        out = bytearray(dinode.size)
        for ext in self.extents(dinode):
            start = ext.startoff * bs
            if ext.unwritten or start >= dinode.size:
                continue
            count = min(ext.count, -(-(dinode.size - start) // bs))
            data = self.read_blocks(ext.block, count)
            out[start : start + len(data)] = data[: dinode.size - start]
        return bytes(out)

    # -- directories --------------------------------------------------------------------
    def lookup(self, path: str) -> int:
        """The inode number of ``path`` (relative to the root)."""
        ino = self.sb.rootino
        for part in (p for p in path.split("/") if p):
            entries = self.directory(ino)
            if part.encode() not in entries:
                raise ImageError(f"{path!r} is not in {self.image} (no {part!r})")
            ino = entries[part.encode()]
        return ino

    def directory(self, ino: int) -> dict[bytes, int]:
        """Name → inode number of every entry but ``.`` and ``..`` (cached)."""
        if ino not in self._dirs:
            dinode = self.inode(ino)
            if not stat.S_ISDIR(dinode.mode):
                raise ImageError(f"{self.image}: inode {ino} is not a directory")
            if dinode.format == FMT_LOCAL:
                self._dirs[ino] = self._shortform(dinode.fork)
            else:
                self._dirs[ino] = self._dir_blocks(dinode)
        return self._dirs[ino]

    def _shortform(self, fork: bytes) -> dict[bytes, int]:
        """``xfs_dir2_sf_hdr`` (count, i8count, parent) then entries: namelen, offset[2],
        name, [ftype], inumber (4 bytes, or 8 when i8count)."""
        count, i8count = fork[0], fork[1]
        ino_len = 8 if i8count else 4
        pos = 2 + ino_len
        out: dict[bytes, int] = {}
        for _ in range(count):
            namelen = fork[pos]
            name = fork[pos + 3 : pos + 3 + namelen]
            pos += 3 + namelen + (1 if self.sb.ftype else 0)
            out[name] = int.from_bytes(fork[pos : pos + ino_len], "big")
            pos += ino_len
        return out

    def _dir_blocks(self, dinode: Dinode) -> dict[bytes, int]:
        """Entries of every directory data block (block form ``XDB3`` or ``XDD3``)."""
        sb = self.sb
        per_dirblock = 1 << sb.dirblklog
        data_end = DIR2_LEAF_OFFSET // sb.blocksize
        where: dict[int, int] = {}  # logical block → image block, data space only
        for ext in self.extents(dinode):
            for i in range(ext.count):
                if ext.startoff + i < data_end:
                    where[ext.startoff + i] = ext.block + i
        out: dict[bytes, int] = {}
        for first in sorted(k for k in where if k % per_dirblock == 0):
            raw = b"".join(
                self.read_blocks(where[first + i], 1) if first + i in where else b""
                for i in range(per_dirblock)
            )
            if len(raw) != sb.blocksize * per_dirblock:
                raise ImageError(f"{self.image}: directory {dinode.ino} has a partial block")
            out.update(self._dir_entries(dinode.ino, raw))
        return out

    def _dir_entries(self, ino: int, raw: bytes) -> dict[bytes, int]:
        """``xfs_dir2_data_entry``: inumber[8], namelen, name, [ftype], tag[2], padded to 8;
        unused space is ``freetag 0xffff, length``. A block-form directory ends with its leaf
        entries (8 bytes each) and a tail (count, stale)."""
        magic = raw[:4]
        if magic == DIR3_BLOCK_MAGIC:
            (leaf_count,) = struct.unpack_from(">I", raw, len(raw) - 8)
            end = len(raw) - 8 - 8 * leaf_count
        elif magic == DIR3_DATA_MAGIC:
            end = len(raw)
        else:
            raise ImageError(f"{self.image}: directory {ino} has a block with magic {magic!r}")
        out: dict[bytes, int] = {}
        pos = DIR3_DATA_HDR_LEN
        while pos < end:
            (tag,) = struct.unpack_from(">H", raw, pos)
            if tag == DIR2_DATA_FREE_TAG:
                (length,) = struct.unpack_from(">H", raw, pos + 2)
                if length == 0 or length % 8:
                    raise ImageError(f"{self.image}: directory {ino}: bad free space record")
                pos += length
                continue
            (inumber,) = struct.unpack_from(">Q", raw, pos)
            namelen = raw[pos + 8]
            name = raw[pos + 9 : pos + 9 + namelen]
            if name not in (b".", b".."):
                out[name] = inumber
            pos += (8 + 1 + namelen + (1 if self.sb.ftype else 0) + 2 + 7) & ~7
        return out

    # -- files --------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        dinode = self.inode(self.lookup(path))
        if not stat.S_ISREG(dinode.mode):
            raise ImageError(f"{path!r} in {self.image} is not a regular file")
        return self.read_data(dinode)


def read_files(image: Path, paths: Sequence[str]) -> dict[str, bytes]:
    """Every file's bytes, read through the on-disk format (see the module doc)."""
    with XfsReader(image) as xfs:
        return {path: xfs.read_file(path) for path in paths}
