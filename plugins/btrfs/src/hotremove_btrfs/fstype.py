"""The ``btrfs`` filesystem type: real images from btrfs-progs, read back by btrfs-progs.

* Images: ``mkfs.btrfs --rootdir`` fills the image without mounting it
  (:mod:`hotremove_btrfs.mkfs`: sector 4 KiB, single metadata and data, fsid fixed per name).
* Maps: ``btrfs inspect-internal dump-tree`` of the fs tree (``EXTENT_DATA``: logical
  addresses) and of the chunk tree (logical → physical) — the image's own metadata
  (:mod:`hotremove_btrfs.dumptree`).
* Checker: ``btrfs check --readonly`` (trees, extent and checksum items; not data against its
  checksums, which the simulator's in-place writeback leaves stale:
  :mod:`hotremove_btrfs.readback`).
* Reader: ``btrfs restore`` copies the files out of the unmounted image — btrfs-progs' own
  reader of the on-disk format, independent of the builder's bookkeeping.
* Kernel side: regular files get ``btrfs_aops`` in every kernel; its pages carry a per-folio
  private (``EXTENT_FOLIO_PRIVATE``), no buffer_heads (:mod:`hotremove_btrfs.migrate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hotremove.fs.fstype import CheckVerdict, FileMap, FilesystemType, GuestMount
from hotremove.model.address_space import AddressSpaceOps
from hotremove_btrfs import mkfs, progs, readback

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.scenario import FilesystemConfig

#: ``btrfs_aops`` (fs/btrfs/inode.c) in every modelled kernel. ``buffers=False``: the private
#: a data page carries is a per-folio state (``EXTENT_FOLIO_PRIVATE``; ``btrfs_subpage`` only
#: for sectors smaller than the page), not buffer_heads — the "folio state" private kind.
BTRFS_AOPS = AddressSpaceOps("btrfs_aops", "btrfs", buffers=False)

#: Modules a guest loads before ``mount -t btrfs`` (their dependencies come from modules.dep:
#: xor, raid6_pq, libcrc32c in 5.10/6.1/6.12 — plus zstd_compress in 6.1 — and xor,
#: libblake2b, raid6_pq in 7.2). crc32c is a *soft* dependency of btrfs up to 6.12
#: (``MODULE_SOFTDEP("pre: crc32c")``): mount asks the crypto API for "crc32c" (the images'
#: checksum), which modules.dep does not name; 7.2 has crc32c built in and no crc32c modules,
#: and names missing from a kernel's modules are skipped.
GUEST_MODULES = ("crc32c_generic", "crc32c_intel", "btrfs")


class BtrfsType(FilesystemType):
    """btrfs on 4 KiB pages (see the module doc)."""

    name: ClassVar[str] = "btrfs"
    description: ClassVar[str] = (
        "btrfs (btrfs-progs mkfs --rootdir; btrfs_aops: btrfs_migrate_folio, no I/O)"
    )
    block_sizes: ClassVar[tuple[int, ...]] = (mkfs.SECTOR_SIZE,)
    default_block_size: ClassVar[int] = mkfs.SECTOR_SIZE
    #: none: btrfs's mount options either leave the data-page path alone or change what the
    #: simulator cannot model (compress, nodatacow and nodatasum apply to files created after
    #: the mount, not to the files mkfs wrote).
    options: ClassVar[Mapping[str, str]] = {}
    min_size: ClassVar[int] = mkfs.MIN_DEV_SIZE
    tools: ClassVar[Mapping[str, str]] = progs.TOOLS

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FilesystemConfig) -> None:
        super().validate(cfg)
        if 0 < cfg.file_size < mkfs.SECTOR_SIZE:
            raise ValueError(
                f"file_size: mkfs.btrfs stores a file smaller than a sector "
                f"({mkfs.SECTOR_SIZE} bytes) inline in a metadata leaf: it has no data block "
                "to cache"
            )
        need = mkfs.rootdir_size([cfg.file_size] * cfg.files)
        if need > cfg.size:
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes need a {need}-byte image "
                f"(mkfs.btrfs --rootdir's estimate), not {cfg.size}"
            )

    # -- images ---------------------------------------------------------------------------
    def image_format(self) -> str:
        mkfs_path = self.require_tools()["mkfs.btrfs"]
        return f"{type(self).__qualname__} btrfs-progs {progs.version(mkfs_path)}"

    def make_image(self, image: Path, cfg: FilesystemConfig, files: Mapping[str, bytes]) -> None:
        tools = self.require_tools()
        mkfs.make_image(tools["mkfs.btrfs"], image, cfg.name, cfg.size, files)

    def map_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, FileMap]:
        btrfs = self.require_tools()["btrfs"]
        return readback.map_files(btrfs, image, paths, cfg.block_size)

    def check(self, image: Path, cfg: FilesystemConfig) -> CheckVerdict:
        return readback.check(self.require_tools()["btrfs"], image)

    def read_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, bytes]:
        return readback.read_files(self.require_tools()["btrfs"], image, paths)

    def data_csum_errors(self, image: Path) -> list[int]:
        """Logical addresses of sectors whose data checksum no longer matches (what a real
        kernel would refuse to read): see :mod:`hotremove_btrfs.readback`."""
        return readback.data_csum_errors(self.require_tools()["btrfs"], image)

    # -- the simulated kernel -------------------------------------------------------------
    def aops(self, cfg: FilesystemConfig, kernel: Kernel) -> AddressSpaceOps:
        return BTRFS_AOPS

    # -- a real kernel --------------------------------------------------------------------
    def guest(self, cfg: FilesystemConfig, kernel: Kernel) -> GuestMount:
        return GuestMount("btrfs", tuple(cfg.options), GUEST_MODULES)
