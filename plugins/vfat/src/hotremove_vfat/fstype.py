"""``filesystem.type = "vfat"``: FAT12/16/32 images for Linux's vfat driver.

How each part is done, and by whom:

* **made** by dosfstools and mtools, never mounted: ``mkfs.fat --invariant -i 20040715 -S
  <block_size>`` lays out the empty filesystem (the FAT width by size, or ``-F`` from the
  ``fat=`` option; ``-r`` when the files need more than 512 root entries), then ``mcopy -m``
  writes the files into the flat root directory in the order given, every file stamped
  2004-07-15 00:00 UTC. Equal inputs give byte-identical images: ``--invariant`` fixes what
  mkfs.fat would draw at random or from the clock, and the volume serial is given.
* **mapped** by :mod:`hotremove_vfat.ondisk`, this plugin's own reader of the boot sector,
  the first FAT and the root directory (nothing shared with the builder).
* **read back** by mtools (``mcopy`` from the unmounted image into a scratch directory): a
  second reader, independent of the builder's bookkeeping and of :mod:`~hotremove_vfat.ondisk`.
* **checked** by ``fsck.fat -n`` (dosfstools, read-only).

A block is a sector: Linux's ``fat_fill_super`` (fs/fat/inode.c) sets the buffer size to the
BPB's logical sector size (``sb_min_blocksize(sb, 512)``, then ``sb_set_blocksize(sb,
logical_sector_size)`` when larger), and ``fat_read_bpb`` accepts 512 to 4096 bytes — so a
4 KiB page carries ``4096 / block_size`` buffer_heads, and a cluster is a run of
``sectors_per_cluster`` of them.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hotremove.errors import ImageError
from hotremove.fs.fstype import (
    CheckVerdict,
    FileMap,
    FilesystemType,
    GuestMount,
    temporary_image,
)
from hotremove.model.address_space import AddressSpaceOps
from hotremove_vfat import ondisk
from hotremove_vfat.tools import first_complaint, is_banner, run, version

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.scenario import FilesystemConfig

#: The operations table of a regular file (fs/fat/inode.c), in every kernel. Its pages carry
#: buffer_heads, one per sector: ``cont_write_begin`` attaches them to every page written
#: (``create_empty_buffers``). A clean page read by ``mpage_readahead`` over contiguous
#: sectors may have none (modelled as having them, like ext2's); 2.6.7's ``fat_readpage`` was
#: ``block_read_full_page`` and always attached them. fscore's ``private`` kind: buffer_heads.
FAT_AOPS = AddressSpaceOps("fat_aops", "vfat", buffers=True)

#: Every timestamp in an image: 2004-07-15 00:00:00 UTC, the day of the seed patchset's mail.
FIXED_TIME = 1_089_849_600
#: The volume serial number (``mkfs.fat -i``).
VOLUME_ID = "20040715"
#: FAT32 with fewer data clusters than this makes mkfs.fat 4.2 warn "Number of clusters for
#: 32 bit FAT is less then suggested minimum" (its MIN_CLUST_32 check, by its own count; this
#: is the count as Linux and :mod:`~hotremove_vfat.ondisk` make it, measured at the edge for
#: every sector size). fsck.fat wants 65,525; Linux mounts any FAT32 BPB.
FAT32_MIN_CLUSTERS = 65534
#: FAT32's reserved sectors as mkfs.fat lays them out (boot, FSInfo, backup boot at 6 …).
FAT32_RESERVED = 32
#: Files per mcopy call (one process per batch, not per file; bounded scratch space).
BATCH = 256
#: mkfs.fat makes at least this many root entries by itself on images of 1 MiB and more.
DEFAULT_ROOT_ENTRIES = 512


def fat_width(cfg: FilesystemConfig) -> int | None:
    """The ``fat=`` option as a number (None: mkfs.fat chooses by size)."""
    widths = [int(o.removeprefix("fat=")) for o in cfg.options if o.startswith("fat=")]
    return widths[0] if widths else None


def max_root_entries(block_size: int) -> int:
    """The most entries a FAT12/16 root directory can have: the BPB keeps the count in 16
    bits and Linux wants whole sectors of them (``fat_read_bpb``)."""
    per_sector = block_size // ondisk.DIR_ENTRY
    return 0xFFFF // per_sector * per_sector


def fat32_min_size(block_size: int) -> int:
    """The smallest image mkfs.fat makes FAT32 without its too-few-clusters warning:
    :data:`FAT32_MIN_CLUSTERS` one-sector clusters after the reserved sectors and two FATs,
    each sized by mkfs.fat for one sector more than those clusters' 4-byte entries fill."""
    fat_sectors = -(-(FAT32_MIN_CLUSTERS + 2) * 4 // block_size) + 1
    return (FAT32_RESERVED + 2 * fat_sectors + FAT32_MIN_CLUSTERS) * block_size


class VfatType(FilesystemType):
    """FAT12/16/32 images mounted by Linux's vfat driver (see the module doc)."""

    name = "vfat"
    description = (
        "FAT12/16/32 (Linux vfat, fat_aops): buffer_heads of one sector; dosfstools + mtools images"
    )
    block_sizes = (512, 1024, 2048, 4096)
    default_block_size = 512  # mkfs.fat's sector size, and every disk's FAT
    options: ClassVar[Mapping[str, str]] = {
        "fat=12": "mkfs.fat -F 12 (at most 4,084 clusters)",
        "fat=16": "mkfs.fat -F 16 (4,085 to 65,524 clusters)",
        "fat=32": "mkfs.fat -F 32 (65,525 clusters or more; the root is a cluster chain)",
    }
    tools: ClassVar[Mapping[str, str]] = {
        "mkfs.fat": "dosfstools",
        "fsck.fat": "dosfstools",
        "mcopy": "mtools",
    }

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FilesystemConfig) -> None:
        super().validate(cfg)
        if len([o for o in cfg.options if o.startswith("fat=")]) > 1:
            raise ValueError("options: give at most one fat= width")
        limit = max_root_entries(cfg.block_size)
        if cfg.files > limit:
            raise ValueError(
                f"files: a flat FAT root directory holds at most {limit} files with "
                f"{cfg.block_size}-byte sectors (FAT12/16 count its entries in 16 bits)"
            )
        sectors = -(-cfg.file_size // cfg.block_size)
        if cfg.files * (sectors * cfg.block_size + ondisk.DIR_ENTRY) > cfg.size:
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes take at least "
                f"{sectors} {cfg.block_size}-byte sectors each and do not fit in "
                f"{cfg.size} bytes"
            )
        if fat_width(cfg) == 32 and cfg.size < fat32_min_size(cfg.block_size):
            raise ValueError(
                f"options: fat=32 needs an image of at least {fat32_min_size(cfg.block_size)} "
                f"bytes with {cfg.block_size}-byte sectors ({FAT32_MIN_CLUSTERS} clusters; "
                "mkfs.fat warns of too few below)"
            )

    def image_format(self) -> str:
        tools = self.require_tools()
        return _image_format(tools["mkfs.fat"], tools["mcopy"])

    # -- images ---------------------------------------------------------------------------
    def make_image(self, image: Path, cfg: FilesystemConfig, files: Mapping[str, bytes]) -> None:
        tools = self.require_tools()
        names = list(files)
        seen: dict[str, str] = {}
        for path in names:
            if not path.strip("/") or "/" in path.strip("/"):
                raise ImageError(f"vfat: {path!r} is not a file name in the root directory")
            other = seen.setdefault(path.strip("/").casefold(), path)
            if other != path:  # FAT looks names up regardless of case: one file, not two
                raise ImageError(f"vfat: {other!r} and {path!r} differ only in case")
        where = f"a {cfg.size}-byte vfat image with {cfg.block_size}-byte sectors"
        image = Path(image)
        with temporary_image(image) as tmp, tempfile.TemporaryDirectory() as scratch:
            with open(tmp, "r+b") as handle:
                handle.truncate(cfg.size)
            self._mkfs(tools["mkfs.fat"], tmp, cfg, len(names), where)
            geo = ondisk.read_geometry(tmp)
            free = geo.clusters - (1 if geo.fat_bits == 32 else 0)  # FAT32: the root's
            used = 0
            batch: list[Path] = []
            for path in names:
                data = files[path]
                used += -(-len(data) // geo.cluster_size)
                if used > free:
                    raise ImageError(
                        f"files: {len(names)} files do not fit in {where}: {path.strip('/')} "
                        f"would need more than its {free} free clusters of "
                        f"{geo.cluster_size} bytes"
                    )
                source = Path(scratch, path.strip("/"))
                source.write_bytes(data)
                os.utime(source, (FIXED_TIME, FIXED_TIME))
                batch.append(source)
                if len(batch) == BATCH:
                    _copy_in(tools["mcopy"], tmp, batch, where)
            _copy_in(tools["mcopy"], tmp, batch, where)
            os.replace(tmp, image)

    def _mkfs(self, mkfs: str, tmp: Path, cfg: FilesystemConfig, entries: int, where: str) -> None:
        argv = [mkfs, "--invariant", "-i", VOLUME_ID, "-S", str(cfg.block_size)]
        width = fat_width(cfg)
        if width is not None:
            argv += ["-F", str(width)]
        if width != 32 and entries > DEFAULT_ROOT_ENTRIES:
            # whole sectors of entries, or Linux refuses the BPB ("bogus number of directory
            # entries", fat_read_bpb) — mkfs.fat 4.2 keeps ``-r 600`` as 600 on 512-byte sectors
            per_sector = cfg.block_size // ondisk.DIR_ENTRY
            argv += ["-r", str(-(-entries // per_sector) * per_sector)]
        opts = f" ({', '.join(cfg.options)})" if cfg.options else ""
        run([*argv, str(tmp)], what=f"mkfs.fat could not make {where}{opts}")

    def map_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, FileMap]:
        image = Path(image)
        geo = ondisk.read_geometry(image)
        if geo.sector_size != cfg.block_size:
            raise ImageError(
                f"{image.name}: sectors of {geo.sector_size} bytes, not the scenario's "
                f"block_size {cfg.block_size}"
            )
        fat = ondisk.read_fat(image, geo).tolist()
        found = ondisk.by_name(ondisk.read_root(image, geo, fat))
        maps: dict[str, FileMap] = {}
        for path in paths:
            entry = found.get(path.strip("/").casefold())
            if entry is None:
                raise ImageError(f"{image.name}: no file {path!r} in the root directory")
            chain = ondisk.cluster_chain(fat, geo, entry.start, f"{image.name}: {path}")
            blocks = ondisk.file_blocks(geo, chain, entry.size, f"{image.name}: {path}")
            maps[path] = FileMap(entry.size, tuple(blocks.tolist()))
        return maps

    def check(self, image: Path, cfg: FilesystemConfig) -> CheckVerdict:
        fsck = self.require_tools()["fsck.fat"]
        result = run([fsck, "-n", str(image)], what=f"fsck.fat -n {image}", check=False)
        if result.returncode not in (0, 1):
            raise ImageError(f"fsck.fat -n {image}: {first_complaint(result)}")
        lines = [
            line.strip()
            for line in (result.stderr + "\n" + result.stdout).splitlines()
            if line.strip() and not is_banner(line.strip())
        ]
        warned = [line for line in lines if line.lower().startswith("warning")]
        if result.returncode == 0 and not warned:
            return CheckVerdict(True, lines[-1].split(": ", 1)[-1] if lines else "clean")
        return CheckVerdict(False, _first_problem(warned or lines))

    def read_files(
        self, image: Path, cfg: FilesystemConfig, paths: Sequence[str]
    ) -> dict[str, bytes]:
        mcopy = self.require_tools()["mcopy"]
        wanted = list(dict.fromkeys(paths))
        what = f"mcopy could not read {Path(image).name}"
        # mtools finds each named file by scanning the directory: many names cost n × entries
        # (≈ 25 s for 2,000 of 5,000 files), one wildcard pass copies every file once
        bulk = len(wanted) > BATCH
        sources = ["::/*"] if bulk else [f"::{p.strip('/')}" for p in wanted]
        out: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory() as scratch:
            run([mcopy, "-i", str(image), "-n", *sources, scratch + "/"], what=what)
            written = {name.casefold(): name for name in os.listdir(scratch)}
            for path in wanted:
                name = written.get(path.strip("/").casefold())
                if name is None:
                    raise ImageError(f"{what}: no file {path!r} in the root directory")
                out[path] = Path(scratch, name).read_bytes()
        return out

    # -- the simulated kernel -------------------------------------------------------------
    def aops(self, cfg: FilesystemConfig, kernel: Kernel) -> AddressSpaceOps:
        """``fat_aops`` in every kernel (mount options do not change the table); what its
        ``migrate_folio`` is in each kernel is :func:`hotremove_vfat.plugin.migrate_folio_of`."""
        return FAT_AOPS

    # -- a real kernel --------------------------------------------------------------------
    def guest(self, cfg: FilesystemConfig, kernel: Kernel) -> GuestMount:
        """``mount -t vfat`` with the driver's defaults. Debian builds vfat and fat as modules
        (``vfat.ko: fat.ko`` in modules.dep), and the default codepage and iocharset
        (CONFIG_FAT_DEFAULT_CODEPAGE=437, CONFIG_FAT_DEFAULT_IOCHARSET="ascii") come from
        ``load_nls()`` at mount time — a ``request_module`` that modules.dep does not list
        and a busybox guest cannot serve, so nls_cp437 and nls_ascii are named here."""
        return GuestMount("vfat", (), ("vfat", "nls_cp437", "nls_ascii"))


@functools.cache
def _image_format(mkfs: str, mcopy: str) -> str:
    return f"VfatType/{version(mkfs, '--help')}/{version(mcopy, '-V')}"


def _copy_in(mcopy: str, image: Path, batch: list[Path], where: str) -> None:
    """``mcopy -m`` a batch of scratch files into the root (keeping their fixed mtime), then
    remove them so scratch space stays one batch deep."""
    if not batch:
        return
    argv = [mcopy, "-i", str(image), "-m", *(str(p) for p in batch), "::/"]
    run(argv, what=f"mcopy could not fill {where}")
    for source in batch:
        source.unlink()
    batch.clear()


def _first_problem(lines: list[str]) -> str:
    """fsck.fat names the file on one line and the problem on the next: join them."""
    if not lines:
        return "fsck.fat found problems"
    if lines[0].startswith("/") and len(lines) > 1:
        return f"{lines[0]}: {lines[1]}"
    return lines[0]
