"""Making a btrfs image that holds the scenario's files: ``mkfs.btrfs --rootdir`` (no mount).

mkfs.btrfs copies a host directory into the new filesystem itself. What that means here
(btrfs-progs 6.2, mkfs/rootdir.c and mkfs/main.c, checked on the images it makes):

* Files smaller than a sector (4096 bytes) are stored *inline* in a metadata leaf; larger files
  get regular extents of at most 1 MiB, uncompressed, one data checksum per sector. No hole is
  punched for zeroes: every block of a file is allocated.
* Before filling, it estimates the space the directory needs (``btrfs_mkfs_size_dir``) and, when
  the target is a regular file smaller than that, *grows the file*. An image must be
  ``cfg.size`` bytes, so a grown image is refused (:func:`rootdir_size` lets ``validate``
  refuse first).
* Reproducibility: the fsid is fixed (``-U``, derived from the filesystem's name: btrfs finds a
  filesystem's devices by fsid, so two images in one guest must differ), and so are every
  file's atime and mtime. What 6.2 cannot fix: the chunk tree's and the device's UUIDs (random,
  no option), each file's ctime (copied from the host file), the root directory's times (the
  clock) and the inode numbers (the host files' ``st_ino``). The placement follows the host
  directory's readdir order (``scandir`` without sorting): equal on one host filesystem,
  possibly not on another. Equal inputs therefore give images whose bytes differ (≈ 1,000 of
  64 MiB for 20 files) but, on one host, the same block maps; the layout is read back from each
  image by :mod:`hotremove_btrfs.dumptree`, never assumed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_btrfs import progs

#: The only sector size the modelled kernels mount on x86-64: btrfs supports a sector smaller
#: than the page (subpage) only for pages larger than 4 KiB, and never a larger one.
SECTOR_SIZE = 4096
#: mkfs.btrfs's default tree block size (16 KiB); fixed so that the size estimate holds.
NODE_SIZE = 16384
#: mkfs.btrfs 6.2's smallest device with single metadata and single data ("minimum size for
#: each btrfs device is 47185920"); DUP metadata (the default since 5.15) would need 109 MiB.
MIN_DEV_SIZE = 47_185_920
#: Every atime/mtime in the image (2001-09-09T01:46:40Z), as the ext images use.
FIXED_TIME = 1_000_000_000
#: Namespace of the fsids (uuid5 of the filesystem's name).
FSID_NAMESPACE = uuid.UUID("b7f5c0de-0000-4000-8000-000000000b7f")

_MIB8 = 8 << 20
_PATH_MAX = 4096


def fsid(name: str) -> str:
    """The filesystem UUID of the image called ``name``: fixed, and distinct per name."""
    return str(uuid.uuid5(FSID_NAMESPACE, name))


def rootdir_size(file_sizes: list[int], sector_size: int = SECTOR_SIZE) -> int:
    """The image size ``mkfs.btrfs --rootdir`` wants for a root directory holding files of
    ``file_sizes``: btrfs-progs 6.2 ``btrfs_mkfs_size_dir`` for single metadata and data —
    every inode (the root too) counts 3 * PATH_MAX + a sector of metadata, plus an eighth of
    the data; each kind beyond its first 8 MiB chunk adds whole 8 MiB chunks to the minimum
    device size."""
    data = sum(-(-size // sector_size) * sector_size for size in file_sizes)
    meta = (len(file_sizes) + 1) * (_PATH_MAX * 3 + sector_size) + data // 8
    extra = sum(-(-used // _MIB8) * _MIB8 - _MIB8 for used in (data, meta) if used > _MIB8)
    return MIN_DEV_SIZE + extra


def make_image(mkfs: str, image: Path, name: str, size: int, files: Mapping[str, bytes]) -> None:
    """Create ``image`` (``size`` bytes) holding ``files``, or leave no file at all."""
    image = Path(image)
    with (
        _temporary_image(image) as tmp,
        tempfile.TemporaryDirectory(prefix=f".{image.name}.", dir=image.parent) as srcdir,
    ):
        _write_tree(Path(srcdir), files)
        with open(tmp, "r+b") as handle:
            handle.truncate(size)
        args = [
            "-q", "-f", "-K",  # quiet, overwrite the empty file, no TRIM
            "-s", str(SECTOR_SIZE), "-n", str(NODE_SIZE),
            "-m", "single", "-d", "single",
            "-U", fsid(name),
            "--rootdir", srcdir, str(tmp),
        ]  # fmt: skip
        result = progs.run("mkfs.btrfs", mkfs, args, check=False)
        where = f"a {_human(size)} btrfs image"
        if result.returncode != 0:
            raise ImageError(f"mkfs.btrfs failed for {where}: {progs.reason(result)}")
        grown = tmp.stat().st_size
        if grown != size:
            raise ImageError(
                f"files do not fit in {where}: mkfs.btrfs --rootdir wants {_human(grown)}"
            )
        os.replace(tmp, image)


def _write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` under ``root`` with fixed times (directories last, the root too)."""
    dirs: set[Path] = set()
    for path, content in files.items():
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ImageError(f"cannot lay out file {path!r}: not a relative path")
        target = root.joinpath(*parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        except OSError as exc:
            raise ImageError(f"cannot lay out file {path!r}: {exc.strerror}") from exc
        os.utime(target, (FIXED_TIME, FIXED_TIME))
        dirs.update(target.parents[: len(parts) - 1])
    for directory in [*sorted(dirs, key=lambda d: -len(d.parts)), root]:
        os.utime(directory, (FIXED_TIME, FIXED_TIME))


@contextlib.contextmanager
def _temporary_image(image: Path) -> Iterator[Path]:
    """A temp file beside ``image`` (same filesystem: the rename is atomic), removed on error."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{image.name}.", suffix=".tmp", dir=image.parent)
    except OSError as exc:
        raise ImageError(f"cannot create an image in {image.parent}: {exc.strerror}") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _human(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):g} {unit}"
    return f"{size} bytes"
