"""Where each file's data lives in an image, as xfs_db reads the inode's extent map.

For every path, one xfs_db process runs ``path /f`` (look the name up), ``inode`` (which
prints the inode now current, so a failed lookup cannot silently leave the previous one),
``print core.mode core.size`` and ``bmap``, whose lines read ``data offset 0 startblock 24
(0/24) count 4 flag 0``. The start block is an *fsblock* (``agno << agblklog | agbno``); the
``(agno/agbno)`` pair xfs_db prints beside it gives the block from the image's start as
``agno * agblocks + agbno`` — the unit the simulator's block device addresses. xfs_db reads
the extent list or the bmap B+tree itself; nothing here decodes on-disk records, which
:mod:`hotremove_xfs.ondisk` does independently for reading files back.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from hotremove.errors import ImageError
from hotremove.fs.fstype import FileMap
from hotremove_xfs.xfsprogs import xfs_db

_BMAP = re.compile(r"^data offset (\d+) startblock (\d+) \((\d+)/(\d+)\) count (\d+) flag (\d+)$")
_FIELD = re.compile(r"^(\S+) = (.*)$")
_CURRENT = re.compile(r"^current inode number is (\d+)$")


def db_path(path: str) -> str:
    """A relative path as xfs_db's ``path`` argument; names a protofile can hold only."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ImageError(f"not a file path inside the filesystem: {path!r}")
    return "/" + "/".join(parts)


def map_files(
    tools: Mapping[str, str], image: Path, block_size: int, paths: Sequence[str]
) -> dict[str, FileMap]:
    """Every file's size and block map (``FileMap``), from xfs_db's ``bmap``."""
    groups = [["sb 0", "print blocksize agblocks agcount"]]
    groups += [[f"path {db_path(p)}", "inode", "print core.mode core.size", "bmap"] for p in paths]
    outputs = xfs_db(tools, image, groups)
    sb = _fields(image, "the superblock", outputs[0])
    if sb["blocksize"] != block_size:
        raise ImageError(f"{image} has {sb['blocksize']}-byte blocks, not {block_size}")
    return {
        path: _file_map(image, path, out, sb["agblocks"], block_size)
        for path, out in zip(paths, outputs[1:], strict=True)
    }


def _fields(image: Path, what: str, lines: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        match = _FIELD.match(line.strip())
        if match is None:
            raise ImageError(f"xfs_db on {image}, {what}: {line.strip()}")
        out[match.group(1)] = _int(match.group(2))
    return out


def _int(text: str) -> int:
    """xfs_db's numbers: ``0x58465342``, ``0100644`` (octal: modes), ``4096``."""
    token = text.split()[0]
    if token.startswith("0x"):
        return int(token, 16)
    return int(token, 8) if token.startswith("0") and len(token) > 1 else int(token)


def _file_map(image: Path, path: str, lines: Sequence[str], agblocks: int, bs: int) -> FileMap:
    """One path's output: the current-inode line, mode and size, then its extents, which
    must tile logical blocks ``0 .. ceil(size/bs) - 1`` with written blocks."""
    fields: dict[str, int] = {}
    extents: list[tuple[int, int, int]] = []  # (logical, image block, count)
    ino = None
    for raw in lines:
        line = raw.strip()
        if (m := _CURRENT.match(line)) is not None:
            ino = int(m.group(1))
        elif (m := _BMAP.match(line)) is not None:
            off, _fsb, agno, agbno, count, flag = (int(g) for g in m.groups())
            if flag:
                raise ImageError(f"cannot map {path!r}: unwritten extent at block {off}")
            extents.append((off, int(agno) * agblocks + int(agbno), count))
        elif (m := _FIELD.match(line)) is not None:
            fields[m.group(1)] = _int(m.group(2))
        else:  # "/f00001: No such file or directory", "bad inode number …"
            raise ImageError(f"cannot map {path!r} in {image}: {line}")
    if ino is None or "core.size" not in fields or "core.mode" not in fields:
        raise ImageError(f"cannot map {path!r} in {image}: xfs_db printed no inode")
    if not stat.S_ISREG(fields["core.mode"]):
        raise ImageError(f"cannot map {path!r} in {image}: not a regular file")
    size = fields["core.size"]
    needed = -(-size // bs)
    blocks: list[int] = []
    for off, start, count in sorted(extents):
        if off != len(blocks) or len(blocks) >= needed:
            break
        blocks.extend(range(start, start + min(count, needed - len(blocks))))
    if len(blocks) != needed:
        raise ImageError(
            f"cannot map {path!r}: {len(blocks)} of its {needed} blocks are mapped from the "
            "start (sparse file or damaged image)"
        )
    return FileMap(size=size, blocks=tuple(blocks))
