"""``filesystem.type = "xfs"``: what the core needs from XFS (the kernel's ``xfs_fs_type``).

Images are made by ``mkfs.xfs -p`` (:mod:`hotremove_xfs.mkfs`), mapped by xfs_db's ``bmap``
(:mod:`hotremove_xfs.bmap`), checked by ``xfs_repair -n`` and read back by this plugin's own
parser of the on-disk format (:mod:`hotremove_xfs.ondisk`), which shares nothing with either
the builder or xfs_db. The operations table per kernel is :mod:`hotremove_xfs.aops`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hotremove.errors import ImageError, ToolMissing
from hotremove.fs.fstype import CheckVerdict, FileMap, FilesystemType, GuestMount
from hotremove_xfs import bmap, fit, mkfs, ondisk
from hotremove_xfs.aops import xfs_aops
from hotremove_xfs.xfsprogs import TOOLS, meaningful_lines, run, version

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.model.address_space import AddressSpaceOps
    from hotremove.scenario import FilesystemConfig

#: v5 inodes are 512 bytes (``-i size=512``, the v5 minimum): one per file, on top of its
#: data blocks.
INODE_SIZE = 512

#: Modules Debian's kernels load to mount XFS, before their modules.dep dependencies.
#: 6.1.0-57 and 6.12.118 (modules.dep): ``kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko``;
#: modules.softdep: ``softdep libcrc32c pre: crc32c`` — libcrc32c asks the crypto API for
#: "crc32c" when it loads, so a provider (crc32c_generic; crc32c-intel is faster, either
#: serves) must be loaded first, and modules.dep does not say so.
GUEST_MODULES = ("crc32c_generic", "xfs")

#: xfs_repair's progress lines, which say nothing about the verdict.
_PROGRESS = re.compile(r"^(Phase \d+ - |- |No modify flag set)")


class XfsType(FilesystemType):
    """XFS v5 (CRC) images. See the package README for what is modelled per kernel."""

    name: ClassVar[str] = "xfs"
    description: ClassVar[str] = (
        "XFS v5 (mkfs.xfs -p); iomap pages without buffer_heads: filemap_migrate_folio ≥ 6.0"
    )
    #: v5 filesystems have blocks of 1 KiB (XFS_MIN_CRC_BLOCKSIZE) up to the page size on
    #: 4 KiB-page kernels (and hotremove models 4 KiB pages)
    block_sizes: ClassVar[tuple[int, ...]] = (1024, 2048, 4096)
    default_block_size: ClassVar[int] = 4096
    #: no mount option changes the table or the page's private state (``dax`` would, but
    #: DAX files have no page cache), so a scenario gives none
    options: ClassVar[Mapping[str, str]] = {}
    #: 32 MiB: the smallest image mkfs.xfs gives two allocation groups — xfs_repair refuses a
    #: single-AG filesystem ("Only one AG detected - cannot validate filesystem geometry")
    min_size: ClassVar[int] = 32 << 20
    max_size: ClassVar[int] = 8 << 30
    tools: ClassVar[Mapping[str, str]] = TOOLS

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FilesystemConfig) -> None:
        """The defaults, and: every file's blocks plus its inode must fit in the image, beside
        the log and the allocation-group metadata as mkfs.xfs sizes them — asked of mkfs.xfs
        itself (:mod:`hotremove_xfs.fit`), so that ``scenario check`` refuses exactly what
        ``run`` cannot build. Without xfsprogs that last part is left to the run."""
        super().validate(cfg)
        per_file = -(-cfg.file_size // cfg.block_size) * cfg.block_size + INODE_SIZE
        if cfg.files * per_file > cfg.size:
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes need "
                f"{cfg.files * per_file} bytes in {cfg.block_size}-byte blocks with their "
                f"inodes; the image has {cfg.size}"
            )
        try:
            tools = self.require_tools()
        except ToolMissing:
            return
        if not fit.fits(tools, cfg.size, cfg.block_size, cfg.files, cfg.file_size):
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes do not fit in a "
                f"{cfg.size}-byte xfs image with {cfg.block_size}-byte blocks beside its log "
                "and metadata (mkfs.xfs: no space left on device)"
            )

    # -- the host's tools -----------------------------------------------------------------
    @cached_property
    def _xfsprogs_version(self) -> str:
        return version(self.require_tools())

    def image_format(self) -> str:
        """Images from another xfsprogs release may differ (layout, defaults)."""
        return f"{type(self).__qualname__} xfsprogs {self._xfsprogs_version}"

    # -- images ---------------------------------------------------------------------------
    def make_image(self, image: Path, cfg: FilesystemConfig, files: Mapping[str, bytes]) -> None:
        tools = self.require_tools()
        try:
            mkfs.make_image(tools, image, cfg.block_size, cfg.size, files)
        except ImageError as exc:
            if "No space left on device" not in str(exc):
                raise
            raise ImageError(
                f"files: {cfg.files} files of {cfg.file_size} bytes do not fit in a "
                f"{cfg.size}-byte xfs image beside its log and metadata ({exc})"
            ) from None

    def map_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, FileMap]:
        return bmap.map_files(self.require_tools(), image, cfg.block_size, paths)

    def check(self, image: Path, cfg: FilesystemConfig) -> CheckVerdict:
        """``xfs_repair -n -f``: no modification; exit 0 when nothing is wrong."""
        result = run(self.require_tools(), "xfs_repair", ["-n", "-f", str(image)], check=False)
        if result.returncode == 0:
            return CheckVerdict(True, "xfs_repair -n: no problems found")
        text = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        problems = [line for line in meaningful_lines(text) if not _PROGRESS.match(line)]
        first = problems[0] if problems else "no message"
        return CheckVerdict(False, f"xfs_repair -n (exit status {result.returncode}): {first}")

    def read_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, bytes]:
        """Read through :mod:`hotremove_xfs.ondisk` (this plugin's parser of the on-disk
        format: superblock, inodes, extent lists and bmap B+trees, directories)."""
        return ondisk.read_files(image, paths)

    # -- the simulated kernel -------------------------------------------------------------
    def aops(self, cfg: FilesystemConfig, kernel: Kernel) -> AddressSpaceOps:
        return xfs_aops(kernel)

    # -- a real kernel --------------------------------------------------------------------
    def guest(self, cfg: FilesystemConfig, kernel: Kernel) -> GuestMount:
        """``mount -t xfs`` after ``crc32c_generic`` and ``xfs`` (+ libcrc32c, from
        modules.dep). Checked on Debian's 6.1 and 6.12 packages; 5.10's and newer kernels'
        lists are to be checked when their bundles are fetched."""
        return GuestMount("xfs", (), GUEST_MODULES)
