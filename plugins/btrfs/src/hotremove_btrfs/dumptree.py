"""Where a file's bytes are, read from the image's own trees (``btrfs inspect-internal
dump-tree``).

btrfs addresses data twice. A file's ``EXTENT_DATA`` items (fs tree) give *logical* addresses
(``disk_bytenr``, the address space every block group lives in); the chunk tree's
``CHUNK_ITEM``\\ s map each logical range to a stripe on the device (a *physical* offset). A
block number for the simulator is the physical offset divided by the block size.

Only what the simulator can cache is accepted: regular, uncompressed extents in single-copy
data chunks. An inline file (its bytes live in a metadata leaf), a compressed or preallocated
extent, a hole, or a data chunk with two copies (DUP) has no one block per page: the map refuses
it with a one-line :class:`~hotremove.errors.ImageError`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hotremove.errors import ImageError
from hotremove.fs.fstype import FileMap

#: ``btrfs_key`` of an item line: ``item 12 key (257 EXTENT_DATA 0) itemoff 15524 itemsize 53``
_ITEM = re.compile(r"^\s*item \d+ key \((\S+) (\S+) (\S+)\) itemoff")
#: the root directory's inode in every fs tree (``BTRFS_FIRST_FREE_OBJECTID``)
ROOT_DIR_INO = 256


@dataclass(frozen=True)
class Chunk:
    """One ``CHUNK_ITEM``: logical ``[start, start + length)`` of a block group."""

    start: int
    length: int
    flags: frozenset[str]  #: ``DATA``, ``METADATA``, ``SYSTEM`` and the profile (``single``…)
    stripes: tuple[int, ...]  #: physical offset of each stripe (devid 1: one device)


class ChunkMap:
    """The chunk tree as a lookup: logical address → its chunk."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self.chunks = sorted(chunks, key=lambda c: c.start)
        self._starts = [c.start for c in self.chunks]

    def chunk_of(self, logical: int) -> Chunk:
        i = bisect.bisect_right(self._starts, logical) - 1
        if i < 0 or logical >= self.chunks[i].start + self.chunks[i].length:
            raise ImageError(f"logical address {logical} is in no chunk of the chunk tree")
        return self.chunks[i]


@dataclass(frozen=True)
class FileExtent:
    """One ``EXTENT_DATA`` item (``struct btrfs_file_extent_item``)."""

    file_offset: int  #: the key's offset: where in the file the extent starts
    kind: str  #: ``inline`` (0), ``regular`` (1), ``prealloc`` (2)
    disk_bytenr: int = 0  #: logical start of the on-disk extent (0: a hole)
    offset: int = 0  #: where this file range starts inside the on-disk extent
    num_bytes: int = 0  #: bytes of the file this item covers
    compression: int = 0


@dataclass
class InodeRecord:
    size: int = 0
    is_dir: bool = False
    extents: list[FileExtent] = field(default_factory=list)


@dataclass
class FsTree:
    """What a map needs from the fs tree: directory entries and each inode's size/extents."""

    entries: dict[int, dict[str, int]] = field(default_factory=dict)  #: dir ino → name → ino
    inodes: dict[int, InodeRecord] = field(default_factory=dict)

    def lookup(self, path: str) -> int:
        """The inode of ``path`` (relative to the root), walking ``DIR_INDEX`` entries."""
        ino = ROOT_DIR_INO
        for part in (p for p in path.split("/") if p):
            child = self.entries.get(ino, {}).get(part)
            if child is None:
                raise ImageError(f"{path!r} is not in the image's fs tree")
            ino = child
        return ino


def parse_chunk_tree(text: str) -> ChunkMap:
    """``dump-tree -t chunk`` → the chunk map."""
    chunks: list[Chunk] = []
    start: int | None = None
    length = 0
    flags: frozenset[str] = frozenset()
    stripes: list[int] = []

    def close() -> None:
        if start is not None:
            chunks.append(Chunk(start, length, flags, tuple(stripes)))

    for line in text.splitlines():
        item = _ITEM.match(line)
        if item:
            close()
            start = int(item.group(3)) if item.group(2) == "CHUNK_ITEM" else None
            stripes = []
            continue
        if start is None:
            continue
        words = line.split()
        if words[:1] == ["length"]:
            length = int(words[1])
            flags = frozenset(words[words.index("type") + 1].split("|"))
        elif words[:1] == ["stripe"] and "offset" in words:
            stripes.append(int(words[words.index("offset") + 1]))
    close()
    if not chunks:
        raise ImageError("the chunk tree lists no chunk")
    return ChunkMap(chunks)


def parse_fs_tree(text: str) -> FsTree:
    """``dump-tree -t fs`` → directory entries, sizes and file extents."""
    tree = FsTree()
    kind: str | None = None  # the item type we are inside (None: one we skip)
    objectid = offset = 0
    pending: dict[str, int | str] = {}

    for line in text.splitlines():
        item = _ITEM.match(line)
        if item:
            kind, offset = item.group(2), _int(item.group(3))
            objectid = _int(item.group(1))
            pending = {}
            continue
        if kind is None:
            continue
        words = line.split()
        if kind == "INODE_ITEM" and words[:1] == ["generation"] and "size" in words:
            record = tree.inodes.setdefault(objectid, InodeRecord())
            record.size = int(words[words.index("size") + 1])
        elif kind == "DIR_INDEX":
            if words[:2] == ["location", "key"]:
                pending["child"] = _int(words[2].lstrip("("))
                pending["type"] = words[-1]
            elif line.lstrip().startswith("name: ") and "child" in pending:
                name = line.split("name: ", 1)[1]
                tree.entries.setdefault(objectid, {})[name] = int(pending["child"])
                if pending["type"] == "DIR":
                    tree.inodes.setdefault(int(pending["child"]), InodeRecord()).is_dir = True
        elif kind == "EXTENT_DATA":
            _extent_line(tree, objectid, offset, words, pending)
    return tree


def _extent_line(
    tree: FsTree, ino: int, file_offset: int, words: list[str], pending: dict[str, int | str]
) -> None:
    """Accumulate one EXTENT_DATA item's lines; store it once its last line is read."""
    record = tree.inodes.setdefault(ino, InodeRecord())
    if words[:1] == ["generation"] and "type" in words:
        code = int(words[words.index("type") + 1])
        pending["kind"] = {0: "inline", 1: "regular", 2: "prealloc"}.get(code, f"type {code}")
        if code == 0:  # one line follows: "inline extent data size N ram_bytes N compression C"
            record.extents.append(FileExtent(file_offset, "inline"))
    elif words[:4] == ["extent", "data", "disk", "byte"]:
        pending["disk_bytenr"] = int(words[4])
    elif words[:3] == ["extent", "data", "offset"]:
        pending["offset"], pending["num_bytes"] = int(words[3]), int(words[5])
    elif words[:2] == ["extent", "compression"] and "kind" in pending:
        record.extents.append(
            FileExtent(
                file_offset,
                str(pending["kind"]),
                int(pending.get("disk_bytenr", 0)),
                int(pending.get("offset", 0)),
                int(pending.get("num_bytes", 0)),
                int(words[2]),
            )
        )


def _int(word: str) -> int:
    """Key fields are numbers in the fs tree; symbolic ones (``EXTENT_CSUM``…) are not ours."""
    try:
        return int(word)
    except ValueError:
        return -1


def file_maps(
    tree: FsTree, chunks: ChunkMap, paths: Sequence[str], block_size: int
) -> dict[str, FileMap]:
    """Each path's size and block map (absolute image block numbers of ``block_size``)."""
    return {path: _file_map(tree, chunks, path, block_size) for path in paths}


def _file_map(tree: FsTree, chunks: ChunkMap, path: str, block_size: int) -> FileMap:
    ino = tree.lookup(path)
    record = tree.inodes.get(ino)
    if record is None or record.is_dir:
        raise ImageError(f"{path!r} is not a regular file in the image")
    nblocks = -(-record.size // block_size)
    blocks: list[int | None] = [None] * nblocks
    for extent in sorted(record.extents, key=lambda e: e.file_offset):
        why = _unmappable(extent)
        if why:
            raise ImageError(f"{path!r} cannot be cached block by block: {why}")
        first = extent.file_offset // block_size
        count = -(-extent.num_bytes // block_size)
        logical = extent.disk_bytenr + extent.offset
        chunk = chunks.chunk_of(logical)
        if "DATA" not in chunk.flags or len(chunk.stripes) != 1:
            raise ImageError(
                f"{path!r}: its data is in a {'|'.join(sorted(chunk.flags))} chunk with "
                f"{len(chunk.stripes)} stripes (the simulator writes one copy)"
            )
        if logical + count * block_size > chunk.start + chunk.length:
            raise ImageError(f"{path!r}: an extent runs past the end of its chunk")
        if extent.file_offset % block_size or logical % block_size:
            raise ImageError(f"{path!r}: an extent is not aligned to {block_size}-byte blocks")
        physical = chunk.stripes[0] + (logical - chunk.start)
        for i in range(count):
            if first + i < nblocks:
                blocks[first + i] = physical // block_size + i
    missing = [i for i, b in enumerate(blocks) if b is None]
    if missing:
        raise ImageError(f"{path!r}: block {missing[0]} is a hole (no extent holds it)")
    return FileMap(record.size, tuple(b for b in blocks if b is not None))


def _unmappable(extent: FileExtent) -> str:
    if extent.kind == "inline":
        return "its bytes are inline in a metadata leaf"
    if extent.kind != "regular":
        return f"a {extent.kind} extent"
    if extent.compression:
        return f"a compressed extent (type {extent.compression})"
    if extent.disk_bytenr == 0:
        return "a hole"
    return ""
