"""Making real, reproducible XFS images with ``mkfs.xfs -p PROTOFILE`` (no mount, no root).

The files are written to a scratch directory, a protofile lists them (``name ---644 0 0
source``; ``d--755 0 0`` … ``$`` for a directory) and mkfs.xfs copies them in while it
formats the image, so their extents are real allocations on disk — no delayed allocation
is pending in an image that was never mounted.

Reproducible: the UUID is fixed (``-m uuid=``; on v5 it also seeds every metadata CRC), the
sector size is pinned (mkfs would otherwise take the host filesystem's), and the on-disk
features are named rather than left to the xfsprogs version's defaults. What mkfs.xfs cannot
be told is the time: it stamps every inode it creates with the current time (atime, mtime,
ctime, and v3's crtime), so afterwards ``xfs_db -x`` rewrites those four timestamps of every
inode it made — the files, the directories, and the metadata inodes the superblock names
(realtime bitmap and summary: regular inodes too) — to :data:`FIXED_TIME` (each write
recomputes the inode's CRC). Equal inputs and
an equal xfsprogs version then give byte-identical images.

Features: v5 (crc=1) with finobt, sparse inode chunks, reflink, bigtime and inobtcount —
xfsprogs 6.1's defaults, all mountable by Linux ≥ 5.10 — and without nrext64 (Linux ≥ 5.19
only) or rmapbt, so that every modelled kernel's driver can mount the image.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_xfs.bmap import db_path
from hotremove_xfs.xfsprogs import SMALL_FS_ENV, run, xfs_db

#: The UUID of every image (and so the seed of its metadata checksums).
FIXED_UUID = "c0ffee00-0000-4000-8000-0000000000f5"

#: Every inode timestamp (2001-09-09T01:46:40Z), as the ext images use.
FIXED_TIME = 1_000_000_000

#: ``mkfs.xfs`` options besides the block size, UUID and protofile (see the module doc).
MKFS_OPTIONS = (
    "-q",
    "-K",  # no discard: a fresh sparse file has nothing to discard
    "-s", "size=512",
    "-m", "crc=1,finobt=1,rmapbt=0,reflink=1,bigtime=1,inobtcount=1",
    "-i", "size=512,sparse=1,nrext64=0",
    "-n", "ftype=1",
)  # fmt: skip

#: bigtime (v5 + ``-m bigtime=1``) stores a timestamp as nanoseconds since 1901-12-13
#: (``xfs_unix_to_bigtime``: seconds + XFS_BIGTIME_EPOCH_OFFSET, times 10^9), and xfs_db's
#: ``write core.mtime.sec N`` stores N as that raw counter.
BIGTIME_EPOCH_OFFSET = 1 << 31
_TIMESTAMPS = ("core.atime.sec", "core.mtime.sec", "core.ctime.sec", "v3.crtime.sec")
_METADATA_INODES = ("rbmino", "rsumino", "uquotino", "gquotino", "pquotino")
NULLFSINO = (1 << 64) - 1

#: a name a protofile token can carry (no blanks, no ``:`` comment, no ``$`` terminator)
_NAME = re.compile(r"^[A-Za-z0-9._+,=@%-]{1,255}$")


def make_image(
    tools: Mapping[str, str],
    image: Path,
    block_size: int,
    size: int,
    files: Mapping[str, bytes],
) -> None:
    """Create ``image`` (``size`` bytes) holding ``files``, or leave no file at all."""
    image = Path(image)
    with contextlib.ExitStack() as stack:
        # the sources beside the image: the same filesystem as the image cache, not /tmp
        scratch = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=".xfs-src-", dir=image.parent))
        )
        tree = _write_sources(scratch, files)
        (scratch / "proto").write_text(_protofile(tree))
        tmp = _temporary_image(image)
        stack.callback(lambda: tmp.unlink(missing_ok=True))
        with open(tmp, "r+b") as f:
            f.truncate(size)
        args = [*MKFS_OPTIONS, "-b", f"size={block_size}", "-m", f"uuid={FIXED_UUID}"]
        run(tools, "mkfs.xfs", [*args, "-p", "proto", str(tmp)], env=SMALL_FS_ENV, cwd=scratch)
        fix_timestamps(tools, tmp, _all_paths(tree))
        os.replace(tmp, image)


def fix_timestamps(tools: Mapping[str, str], image: Path, paths: list[str]) -> None:
    """Set the four timestamps of every path ("" is the root) and of the metadata inodes
    mkfs.xfs made (realtime bitmap and summary, quota inodes if any) to :data:`FIXED_TIME`.
    Each write is read back as xfs_db prints it, so a changed encoding fails here, loudly."""
    raw = (FIXED_TIME + BIGTIME_EPOCH_OFFSET) * 10**9
    want = datetime.fromtimestamp(FIXED_TIME, UTC).strftime("%a %b %e %H:%M:%S %Y")
    expected = [f"{field} = {want}" for field in _TIMESTAMPS]
    targets = [f"path {db_path(p) if p else '/'}" for p in paths]
    targets += [f"inode {ino}" for ino in _metadata_inodes(tools, image)]
    groups = [[target, *(f"write {f} {raw}" for f in _TIMESTAMPS)] for target in targets]
    for target, lines in zip(targets, xfs_db(tools, image, groups, expert=True), strict=True):
        if [line.strip() for line in lines] != expected:
            got = next((line for line in lines if line.strip() not in expected), "nothing")
            raise ImageError(f"cannot set the timestamps of {target!r}: xfs_db said {got}")


def _metadata_inodes(tools: Mapping[str, str], image: Path) -> list[int]:
    """The superblock's metadata inodes that exist (0 and NULLFSINO mean none)."""
    (lines,) = xfs_db(tools, image, [["sb 0", f"print {' '.join(_METADATA_INODES)}"]])
    inodes = []
    for line in lines:
        name, _, value = line.partition(" = ")
        if name.strip() not in _METADATA_INODES or not value.strip().isdigit():
            raise ImageError(f"xfs_db on {image}, the superblock: {line.strip()}")
        if int(value) not in (0, NULLFSINO):
            inodes.append(int(value))
    return inodes


def _temporary_image(image: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{image.name}.", suffix=".tmp", dir=image.parent)
    os.close(fd)
    return Path(name)


Tree = dict[str, "Tree | str"]  # name → subtree, or the source file (relative to scratch)


def _write_sources(scratch: Path, files: Mapping[str, bytes]) -> Tree:
    """Write every file's bytes under ``scratch/data`` (iterating ``files`` once) and return
    the directory tree they form."""
    (scratch / "data").mkdir()
    root: Tree = {}
    for index, (path, data) in enumerate(files.items()):
        parts = [p for p in path.split("/") if p]
        if not parts or not all(_NAME.match(p) and p not in (".", "..") for p in parts):
            raise ImageError(f"cannot put {path!r} in an XFS protofile (names: {_NAME.pattern})")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ImageError(f"{path!r}: {part!r} is both a file and a directory")
            node = child
        if parts[-1] in node:
            raise ImageError(f"{path!r} is given twice (or is also a directory)")
        source = f"data/{index}"
        (scratch / source).write_bytes(data)
        node[parts[-1]] = source
    return root


def _protofile(tree: Tree) -> str:
    """mkfs.xfs(8) ``-p``: a boot-image line and two numbers (ignored), then the root."""
    lines = ["hotremove", "0 0", "d--755 0 0", *_entries(tree), "$"]
    return "\n".join(lines) + "\n"


def _entries(tree: Tree) -> Iterator[str]:
    for name in sorted(tree):
        node = tree[name]
        if isinstance(node, dict):
            yield f"{name} d--755 0 0"
            yield from _entries(node)
            yield "$"
        else:
            yield f"{name} ---644 0 0 {node}"


def _all_paths(tree: Tree, prefix: str = "") -> list[str]:
    """ "" (the root) and every directory and file path in ``tree``."""
    out = [prefix]
    for name in sorted(tree):
        node, path = tree[name], f"{prefix}/{name}" if prefix else name
        out += _all_paths(node, path) if isinstance(node, dict) else [path]
    return out
