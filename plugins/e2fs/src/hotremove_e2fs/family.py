"""What ext2, ext3 and ext4 share as filesystem types: images, maps, checks and reads through
e2fsprogs, and the scenario rules of their mount options.

:class:`ExtFamilyType` implements every e2fsprogs part of
:class:`hotremove.fs.fstype.FilesystemType` (``mke2fs -d``, debugfs ``stat``/``dump``,
``e2fsck -fn``); the ``hotremove_ext2``, ``hotremove_ext3`` and ``hotremove_ext4`` plugins
subclass it with their name, options, tables per kernel, mount and guest mount.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hotremove.fs.fstype import CheckVerdict, FileMap, FilesystemType, FsConfig
from hotremove_e2fs import footprint
from hotremove_e2fs.blockmap import file_maps
from hotremove_e2fs.blockmap import journal_blocks as image_journal_blocks
from hotremove_e2fs.fsck import fsck
from hotremove_e2fs.mkfs import human_size, make_image, needs_journal
from hotremove_e2fs.readback import read_files
from hotremove_e2fs.tools import run_tool

#: Bump when the image made for equal inputs changes (mkfs.py, the files' layout).
IMAGE_FORMAT = 2

#: The data modes of a journalled ext filesystem (``data=`` mount options).
DATA_MODES: dict[str, str] = {
    "data=ordered": "the default: data written home before its metadata commits",
    "data=writeback": "data written home in any order",
    "data=journal": "data journalled with the metadata (its own a_ops table)",
}


@functools.cache
def e2fsprogs_version() -> str:
    """``mke2fs -V``'s banner ("mke2fs 1.47.0 (5-Feb-2023)"): images differ between
    e2fsprogs releases, so it is part of an image's format."""
    result = run_tool("mke2fs", ["-V"], check=False)
    text = (result.stderr or result.stdout).decode(errors="replace")
    return text.splitlines()[0].strip() if text.strip() else "mke2fs (unknown version)"


class ExtFamilyType(FilesystemType):
    """An ext2/ext3/ext4 image type over e2fsprogs (see the module doc)."""

    block_sizes: ClassVar[tuple[int, ...]] = (1024, 2048, 4096)
    #: hotremove's scenarios have always defaulted to 1 KiB blocks (four buffers a page)
    default_block_size: ClassVar[int] = 1024
    tools: ClassVar[Mapping[str, str]] = {
        "mke2fs": "e2fsprogs",
        "tune2fs": "e2fsprogs",
        "debugfs": "e2fsprogs",
        "e2fsck": "e2fsprogs",
    }
    checker: ClassVar[str] = "e2fsck"
    #: the image has a jbd2 journal (ext3, ext4) whose size :meth:`journal_blocks` reads
    journalled: ClassVar[bool] = False
    #: files are mapped by extents (ext4), not by indirect blocks (ext2, ext3)
    extents: ClassVar[bool] = False

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FsConfig) -> None:
        super().validate(cfg)
        modes = [o for o in cfg.options if o.startswith("data=")]
        if len(modes) > 1:
            raise ValueError("options: give at most one data= mode")
        where = f"a {human_size(cfg.size)} {self.name} image ({cfg.block_size}-byte blocks)"
        blocks = cfg.size // cfg.block_size
        data_mode = self.data_mode(cfg) if self.journalled else None
        if needs_journal(self.name, data_mode) and not footprint.journal_blocks(blocks):
            raise ValueError(
                f"size: {where} is too small for a journal "
                f"(mke2fs needs {footprint.MIN_JOURNAL_FS_BLOCKS} blocks)"
            )
        need = footprint.least_blocks(
            cfg.size,
            cfg.block_size,
            cfg.files,
            cfg.file_size,
            journalled=self.journalled,
            extents=self.extents,
        )
        if need > blocks:
            raise ValueError(
                f"files: {cfg.files} files of {human_size(cfg.file_size)} do not fit in "
                f"{where}: they, its inode tables and journal need at least {need} blocks, "
                f"it has {blocks}"
            )

    def data_mode(self, cfg: FsConfig) -> str | None:
        """A journalled ext filesystem is ``data=ordered`` unless told otherwise."""
        mode = super().data_mode(cfg)
        return mode or ("ordered" if self.journalled else None)

    # -- images ---------------------------------------------------------------------------
    def image_format(self) -> str:
        return f"{type(self).__qualname__}/{IMAGE_FORMAT}/{e2fsprogs_version()}"

    def make_image(self, image: Path, cfg: FsConfig, files: Mapping[str, bytes]) -> None:
        """``mke2fs -d`` with a fixed UUID, hash seed and timestamps (byte-identical images
        for equal inputs); a data mode other than ordered becomes the superblock's default
        mount option (``tune2fs -o``), as a guest mounting the image then finds it."""
        make_image(
            image,
            self.name,
            cfg.block_size,
            cfg.size,
            files,
            data_mode=self.data_mode(cfg) if self.journalled else None,
        )

    def map_files(self, image: Path, cfg: FsConfig, paths: Sequence[str]) -> dict[str, FileMap]:
        """debugfs ``stat`` of every file (one process): its size and data blocks, read from
        the inode and its indirect or extent blocks."""
        return {
            path: FileMap(size, tuple(blocks))
            for path, (size, blocks) in file_maps(image, list(paths)).items()
        }

    def journal_blocks(self, image: Path, cfg: FsConfig) -> int:
        return image_journal_blocks(image) if self.journalled else 0

    def check(self, image: Path, cfg: FsConfig) -> CheckVerdict:
        """``e2fsck -fn``: forced, read-only."""
        verdict = fsck(image)
        return CheckVerdict(verdict.ok, verdict.summary)

    def read_files(self, image: Path, cfg: FsConfig, paths: Sequence[str]) -> dict[str, bytes]:
        """debugfs ``dump`` of every file (one process), through the image's metadata."""
        return read_files(image, list(paths))


__all__ = ["DATA_MODES", "IMAGE_FORMAT", "ExtFamilyType", "e2fsprogs_version"]
