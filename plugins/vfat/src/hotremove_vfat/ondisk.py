"""The FAT on-disk format, read straight from the image: boot sector, first FAT, root directory.

This is how :meth:`hotremove_vfat.fstype.VfatType.map_files` learns where a file lives; it
shares nothing with the builder (mtools writes the image). The layout is Microsoft's FAT
specification ("fatgen103"); where Linux's fs/fat decides differently, this module follows
Linux, since Linux is the driver whose page cache the simulator models:

* the FAT width is chosen as ``fat_fill_super`` (fs/fat/inode.c) chooses it: FAT32 when the
  BPB's 16-bit FAT length is 0 and its 32-bit one is not, otherwise FAT16 when the data area
  holds more than ``MAX_FAT12`` = 4084 clusters, else FAT12;
* the BPB is refused where ``fat_read_bpb`` refuses it (sector size a power of two from 512
  to 4096, sectors per cluster a power of two, at least one reserved sector and one FAT, a
  FAT12/16 root directory of whole sectors);
* names are looked up case-insensitively, as ``vfat_find`` does by default.

Block numbers are sectors from the start of the image: the driver sets the buffer size to the
logical sector size (``sb_set_blocksize(sb, logical_sector_size)`` in ``fat_fill_super``),
so a sector *is* a buffer_head's block.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotremove.errors import ImageError

#: ``MAX_FAT12`` (fs/fat/fat.h): more data clusters than this make a non-FAT32 volume FAT16
MAX_FAT12 = 0xFF4
#: the smallest cluster number that ends a chain (EOC), per FAT width
EOC = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}
#: the "bad cluster" mark, per FAT width
BAD = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}
DIR_ENTRY = 32
ATTR_VOLUME, ATTR_DIR, ATTR_LFN = 0x08, 0x10, 0x0F
#: NT's case bits in byte 12 of a short entry (mtools writes them for "f00012")
CASE_LOWER_BASE, CASE_LOWER_EXT = 0x08, 0x10


@dataclass(frozen=True)
class Geometry:
    """What the boot sector says, in sectors (``struct fat_bios_param_block``)."""

    sector_size: int
    sectors_per_cluster: int
    reserved: int
    fats: int
    root_entries: int  # FAT12/16: the fixed root directory's entries (0 on FAT32)
    total_sectors: int
    fat_length: int  # sectors per FAT
    root_cluster: int  # FAT32: the root directory's first cluster (0 on FAT12/16)
    fat_bits: int
    data_start: int  # first sector of cluster 2
    clusters: int  # data clusters: numbers 2 .. clusters + 1

    @property
    def cluster_size(self) -> int:
        return self.sector_size * self.sectors_per_cluster

    @property
    def root_start(self) -> int:
        """FAT12/16: the root directory's first sector (right after the FATs)."""
        return self.reserved + self.fats * self.fat_length

    def cluster_sector(self, cluster: int) -> int:
        return self.data_start + (cluster - 2) * self.sectors_per_cluster


def read_geometry(image: Path) -> Geometry:
    """Parse the boot sector of ``image`` (see the module doc for what is refused)."""
    with open(image, "rb") as handle:
        boot = handle.read(512)
    if len(boot) < 512:
        raise ImageError(f"{image}: too short for a FAT boot sector")
    (sector_size, spc, reserved, fats, root_entries, total16, _media, fat16_length) = (
        struct.unpack_from("<HBHBHHBH", boot, 11)
    )
    total32, fat32_length = struct.unpack_from("<II", boot, 32)
    root_cluster = struct.unpack_from("<I", boot, 44)[0]
    problem = None
    if sector_size not in (512, 1024, 2048, 4096):
        problem = f"bogus logical sector size {sector_size}"
    elif spc == 0 or spc & (spc - 1):
        problem = f"bogus sectors per cluster {spc}"
    elif reserved == 0:
        problem = "bogus number of reserved sectors"
    elif fats == 0:
        problem = "bogus number of FAT structures"
    if problem:
        raise ImageError(f"{image}: not a FAT image the Linux driver mounts ({problem})")
    fat32 = fat16_length == 0 and fat32_length != 0
    fat_length = fat32_length if fat32 else fat16_length
    per_sector = sector_size // DIR_ENTRY
    if not fat32 and (root_entries == 0 or root_entries % per_sector):
        raise ImageError(f"{image}: bogus number of root directory entries {root_entries}")
    root_sectors = 0 if fat32 else root_entries // per_sector
    total = total16 or total32
    data_start = reserved + fats * fat_length + root_sectors
    clusters = (total - data_start) // spc
    if clusters <= 0:
        raise ImageError(f"{image}: no data area after the FATs")
    fat_bits = 32 if fat32 else (16 if clusters > MAX_FAT12 else 12)
    return Geometry(
        sector_size=sector_size,
        sectors_per_cluster=spc,
        reserved=reserved,
        fats=fats,
        root_entries=0 if fat32 else root_entries,
        total_sectors=total,
        fat_length=fat_length,
        root_cluster=root_cluster if fat32 else 0,
        fat_bits=fat_bits,
        data_start=data_start,
        clusters=clusters,
    )


def read_fat(image: Path, geo: Geometry) -> np.ndarray:
    """The first FAT as one entry per cluster number (0 .. clusters + 1), decoded to ints."""
    count = geo.clusters + 2
    with open(image, "rb") as handle:
        handle.seek(geo.reserved * geo.sector_size)
        raw = handle.read(geo.fat_length * geo.sector_size)
    need = {12: (count * 3 + 1) // 2, 16: count * 2, 32: count * 4}[geo.fat_bits]
    if len(raw) < need:
        raise ImageError(f"{image}: the FAT is shorter than its {geo.clusters} clusters")
    if geo.fat_bits == 32:
        return np.frombuffer(raw, "<u4", count) & 0x0FFFFFFF
    if geo.fat_bits == 16:
        return np.frombuffer(raw, "<u2", count).astype(np.uint32)
    # FAT12: two entries in three bytes, the odd one in the high 12 bits
    data = np.frombuffer(raw + b"\0", np.uint8).astype(np.uint32)
    index = np.arange(count)
    offset = index * 3 // 2
    pair = data[offset] | (data[offset + 1] << 8)
    return np.where(index & 1, pair >> 4, pair & 0xFFF).astype(np.uint32)


def cluster_chain(fat: Sequence[int], geo: Geometry, start: int, what: str) -> list[int]:
    """The clusters of the chain starting at ``start``, in order; a cluster number out of
    range, a free or bad cluster inside the chain, or a loop is an :class:`ImageError`.
    ``fat`` is :func:`read_fat`'s table, as a list for long walks (numpy indexes slowly)."""
    chain: list[int] = []
    if start == 0:
        return chain
    eoc, bad, last = EOC[geo.fat_bits], BAD[geo.fat_bits], geo.clusters + 1
    cluster = start
    while True:
        if not 2 <= cluster <= last:
            raise ImageError(f"{what}: cluster {cluster} is outside the data area (2..{last})")
        chain.append(cluster)
        if len(chain) > geo.clusters:
            raise ImageError(f"{what}: the cluster chain loops")
        following = int(fat[cluster])
        if following >= eoc:
            return chain
        if following in (0, bad):
            kind = "free" if following == 0 else "bad"
            raise ImageError(f"{what}: the chain runs into a {kind} cluster after {cluster}")
        cluster = following


@dataclass(frozen=True)
class DirEntry:
    """One file of a directory: its names, attributes, first cluster and size."""

    short_name: str  # "f00012" (NT case bits applied) or "F00012"
    long_name: str | None  # the VFAT long name, when it has one
    attr: int
    start: int
    size: int


def read_root(image: Path, geo: Geometry, fat: Sequence[int]) -> list[DirEntry]:
    """Every entry of the root directory (FAT12/16: the fixed area after the FATs; FAT32: the
    cluster chain from the BPB's root cluster), deleted ones and the volume label left out."""
    with open(image, "rb") as handle:
        if geo.fat_bits == 32:
            chain = cluster_chain(fat, geo, geo.root_cluster, "the root directory")
            parts = []
            for cluster in chain:
                handle.seek(geo.cluster_sector(cluster) * geo.sector_size)
                parts.append(handle.read(geo.cluster_size))
            raw = b"".join(parts)
        else:
            handle.seek(geo.root_start * geo.sector_size)
            raw = handle.read(geo.root_entries * DIR_ENTRY)
    return parse_directory(raw, fat32=geo.fat_bits == 32)


def parse_directory(raw: bytes, *, fat32: bool) -> list[DirEntry]:
    """Decode directory entries: short 8.3 entries, preceded by VFAT long-name entries whose
    checksum matches (a stray long name, as after a DOS rename, is dropped as Linux drops it)."""
    entries: list[DirEntry] = []
    pending: dict[int, str] = {}
    expected = waiting = 0  # the long name's entry count, and the order of the next one
    checksum = -1
    for offset in range(0, len(raw) - DIR_ENTRY + 1, DIR_ENTRY):
        entry = raw[offset : offset + DIR_ENTRY]
        first, attr = entry[0], entry[11]
        if first == 0x00:
            break
        if first == 0xE5:
            pending, waiting = {}, 0
            continue
        if attr == ATTR_LFN:
            order = first & 0x1F
            if first & 0x40:
                pending, expected, waiting, checksum = {}, order, order, entry[13]
            if order == 0 or order != waiting or entry[13] != checksum:
                pending, waiting = {}, 0
                continue
            chars = entry[1:11] + entry[14:26] + entry[28:32]
            pending[order] = chars.decode("utf-16-le", errors="replace")
            waiting -= 1
            continue
        if attr & ATTR_VOLUME:
            pending, waiting = {}, 0
            continue
        long_name = None
        whole = pending and waiting == 0 and len(pending) == expected
        if whole and _checksum(entry[:11]) == checksum:
            text = "".join(pending[i] for i in range(1, expected + 1))
            long_name = text.split("\0", 1)[0]
        pending, waiting = {}, 0
        start = struct.unpack_from("<H", entry, 26)[0]
        if fat32:  # ``fat_get_start``: the high half counts on FAT32 only
            start |= struct.unpack_from("<H", entry, 20)[0] << 16
        size = struct.unpack_from("<I", entry, 28)[0]
        entries.append(DirEntry(_short_name(entry), long_name, attr, start, size))
    return entries


def _short_name(entry: bytes) -> str:
    base = bytearray(entry[:8])
    if base[0] == 0x05:  # a name that really starts with 0xE5
        base[0] = 0xE5
    stem = bytes(base).decode("cp437").rstrip(" ")
    ext = entry[8:11].decode("cp437").rstrip(" ")
    if entry[12] & CASE_LOWER_BASE:
        stem = stem.lower()
    if entry[12] & CASE_LOWER_EXT:
        ext = ext.lower()
    return f"{stem}.{ext}" if ext else stem


def _checksum(name: bytes) -> int:
    """The short name's checksum a long-name entry carries (fatgen103, ``ChkSum``)."""
    total = 0
    for byte in name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def by_name(entries: list[DirEntry]) -> dict[str, DirEntry]:
    """Files by case-folded name (long and short), as a case-insensitive lookup finds them."""
    found: dict[str, DirEntry] = {}
    for entry in entries:
        if entry.attr & ATTR_DIR:
            continue
        found.setdefault(entry.short_name.casefold(), entry)
        if entry.long_name:
            found[entry.long_name.casefold()] = entry
    return found


def file_blocks(geo: Geometry, chain: list[int], size: int, what: str) -> np.ndarray:
    """Logical block → image block (sector number) for the ``ceil(size / sector)`` blocks of a
    file whose clusters are ``chain``."""
    count = -(-size // geo.sector_size)
    need = -(-count // geo.sectors_per_cluster)
    if len(chain) < need:
        raise ImageError(
            f"{what}: {size} bytes need {need} clusters but the chain has {len(chain)}"
        )
    starts = geo.data_start + (np.asarray(chain[:need], np.int64) - 2) * geo.sectors_per_cluster
    sectors = starts[:, None] + np.arange(geo.sectors_per_cluster, dtype=np.int64)
    return sectors.ravel()[:count]
