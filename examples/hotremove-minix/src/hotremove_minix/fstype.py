"""``filesystem.type = "minix"``: minix v3 images, as hotremove's filesystem-type protocol
(:class:`hotremove.fs.fstype.FilesystemType`) wants them.

* **make** — util-linux ``mkfs.minix -3`` lays out the empty filesystem; the plugin writes the
  files in itself (:mod:`hotremove_minix.mkfs`): mkfs.minix cannot copy files in.
* **map** and **read** — the plugin's own parser of the on-disk format
  (:mod:`hotremove_minix.reader`): super block, inode 1's directory entries, each inode's zone
  tree. It shares no bookkeeping with the writer.
* **check** — util-linux ``fsck.minix -fv``, read-only (:mod:`hotremove_minix.fsck`).
* **kernel** — every file gets ``minix_aops`` (fs/minix/inode.c ``minix_set_inode``), whose
  pages carry buffer_heads in every modelled kernel: ``minix_read_folio`` is
  ``block_read_full_folio`` (``block_read_full_page`` before the folio conversion), which
  attaches one buffer_head per 1 KiB block. Which ``migrate_folio`` the table has is the
  strategy hook's to say (:mod:`hotremove_minix.plugin`).
* **guest** — Debian builds minix as a module (``CONFIG_MINIX_FS=m`` in 6.1 and 6.12) without
  dependencies (``modinfo -F depends minix.ko`` is empty in 6.1.0-57 and 6.12.118+deb12):
  ``insmod minix.ko``, ``mount -t minix``. The driver takes no mount options.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hotremove.errors import ImageError
from hotremove.fs.fstype import CheckVerdict, FileMap, FilesystemType, GuestMount
from hotremove.model.address_space import AddressSpaceOps
from hotremove_minix import __version__, fsck, mkfs, reader
from hotremove_minix.layout import (
    BLOCK_SIZE,
    MAX_FILE_SIZE,
    MAX_FIRST_ZONE,
    Geometry,
    blocks_needed,
)

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.scenario import FilesystemConfig

AOPS = "minix_aops"


class MinixType(FilesystemType):
    """minix v3 (see the module doc)."""

    name = "minix"
    description = "minix v3: mkfs.minix -3, files written by the plugin, fsck.minix"
    #: mkfs.minix writes only 1 KiB blocks (``Super3.s_blocksize = MINIX_BLOCK_SIZE``)
    block_sizes = (BLOCK_SIZE,)
    default_block_size = BLOCK_SIZE
    #: fs/minix parses no mount options
    options: ClassVar[Mapping[str, str]] = {}
    #: mkfs.minix: "number of blocks too small" below 10 blocks
    min_size = 10 * BLOCK_SIZE
    #: hotremove's own ceiling; mkfs.minix -3 would go to ≈ 16 GiB before its first data zone
    #: passes 65535 (one inode per 16 blocks)
    max_size = 8 << 30
    #: the programs it runs (util-linux, in /sbin on Debian 12)
    mkfs_program: ClassVar[str] = "mkfs.minix"
    fsck_program: ClassVar[str] = "fsck.minix"
    tools: ClassVar[Mapping[str, str]] = {mkfs_program: "util-linux", fsck_program: "util-linux"}

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FilesystemConfig) -> None:
        """The protocol's checks, then minix's own: whole 1 KiB blocks, files no larger than
        ``s_max_size``, and room for every file's data and indirect blocks, the root
        directory and an inode each, in the layout ``mkfs.minix -3`` would choose."""
        super().validate(cfg)
        if cfg.size % BLOCK_SIZE:
            raise ValueError("size: a minix image is a whole number of 1KiB blocks")
        if cfg.file_size > MAX_FILE_SIZE:
            raise ValueError("file_size: a minix v3 file is at most 2GiB - 1 byte (s_max_size)")
        geo = Geometry.for_image(cfg.size // BLOCK_SIZE)
        if cfg.files + 1 > geo.inodes:
            geo = Geometry.for_image(geo.blocks, cfg.files + 1)
        if geo.first_zone > MAX_FIRST_ZONE:
            raise ValueError(f"files: {cfg.files} inodes push mkfs.minix's first data zone too far")
        need = blocks_needed(cfg.files, cfg.file_size)
        if need > geo.data_zones:
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes need {need} data zones "
                f"(with indirect blocks and the directory), a {cfg.size >> 10}KiB minix image "
                f"has {geo.data_zones}"
            )

    def describe(self, cfg: FilesystemConfig) -> str:
        return "minix v3"

    def image_format(self) -> str:
        """The plugin's layout and ``mkfs.minix``'s version: both shape the bytes."""
        mkfs_version = _mkfs_version(self._tool(self.mkfs_program))
        return f"{type(self).__qualname__} {__version__}; {mkfs_version}"

    def _tool(self, program: str) -> str:
        return self.require_tools()[program]

    # -- images ---------------------------------------------------------------------------
    def make_image(self, image: Path, cfg: FilesystemConfig, files: Mapping[str, bytes]) -> None:
        mkfs.make_image(self._tool(self.mkfs_program), image, cfg.size, files)

    def map_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, FileMap]:
        return reader.map_files(image, paths)

    def check(self, image: Path, cfg: FilesystemConfig) -> CheckVerdict:
        return fsck.check(self._tool(self.fsck_program), image)

    def read_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, bytes]:
        return reader.read_files(image, paths)

    # -- the simulated kernel -------------------------------------------------------------
    def aops(self, cfg: FilesystemConfig, kernel: Kernel) -> AddressSpaceOps:
        """``minix_aops`` in every kernel; its pages carry buffer_heads (private kind
        "buffer_heads": one per 1 KiB block, four per page) in 2004, 5.10, 6.1, 6.12 and 7.2
        alike. (Kernel "2004" had no minix v3 — the 2.6-era fs/minix reads v1 and v2 only; v3
        support, "Updated to filesystem version 3 by Daniel Aragones", came later — so there
        a v3 image is modelled with the table that driver had, as the ext4 plugin models ext4
        images in 2004.)"""
        return AddressSpaceOps(AOPS, self.name, buffers=True)

    # -- a real kernel --------------------------------------------------------------------
    def guest(self, cfg: FilesystemConfig, kernel: Kernel) -> GuestMount:
        return GuestMount("minix", (), ("minix",))


@functools.cache
def _mkfs_version(mkfs_path: str) -> str:
    proc = subprocess.run([mkfs_path, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise ImageError(f"{mkfs_path} --version failed (exit {proc.returncode})")
    return proc.stdout.strip()
