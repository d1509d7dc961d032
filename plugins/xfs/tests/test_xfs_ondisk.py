"""The plugin's own reader of the on-disk format, on the layouts mkfs.xfs -p rarely or never
makes: B+tree data forks, holes and unwritten extents (written by a real kernel: see
data/make-kernel-written.sh), leaf/node and B+tree directories, and its superblock fields
against what xfs_db prints."""

from __future__ import annotations

import hashlib
import itertools
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from hotremove.errors import ImageError
from hotremove_xfs.ondisk import FMT_BTREE, FMT_EXTENTS, XfsReader

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.xfs", path="/usr/sbin:/sbin:/usr/bin") is None,
    reason="xfsprogs is not installed (apt-get install xfsprogs)",
)


@pytest.fixture(scope="module")
def kernel_written(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The image a Linux kernel wrote ``frag`` and ``sparse`` into, and the sha256 of each
    file as the kernel read it back through the mount."""
    image = tmp_path_factory.mktemp("kernel-written") / "kernel-written.img"
    image.write_bytes(lzma.decompress((DATA / "kernel-written.img.xz").read_bytes()))
    sums = {}
    for line in (DATA / "kernel-written.sha256").read_text().splitlines():
        if not line.startswith("#"):
            digest, name = line.split()
            sums[name] = digest
    return image, sums


def test_reads_what_the_kernel_wrote(xfs, xfs_config, kernel_written):
    """B+tree data forks (BMA3 blocks), holes, unwritten extents: byte-equal to the kernel."""
    image, sums = kernel_written
    cfg = xfs_config(block_size=1024, size=32 << 20)
    with XfsReader(image) as reader:
        for name in ("frag", "sparse"):
            dinode = reader.inode(reader.lookup(name))
            assert dinode.format == FMT_BTREE, f"{name} should exercise the B+tree path"
        extents = reader.extents(reader.inode(reader.lookup("sparse")))
        assert any(e.unwritten for e in extents)
        assert any(a.startoff + a.count < b.startoff for a, b in itertools.pairwise(extents))

    back = xfs.read_files(image, cfg, sorted(sums))

    assert {name: hashlib.sha256(data).hexdigest() for name, data in back.items()} == sums
    assert xfs.check(image, cfg).ok


def test_xfs_db_maps_agree_with_the_kernels_bytes(xfs, xfs_config, kernel_written):
    """``frag`` is dense: its 100 blocks, found through xfs_db's walk of the B+tree, hold the
    kernel's bytes. ``sparse`` cannot be mapped block by block: one line says why."""
    image, sums = kernel_written
    cfg = xfs_config(block_size=1024, size=32 << 20)

    fmap = xfs.map_files(image, cfg, ["frag"])["frag"]

    raw = image.read_bytes()
    data = b"".join(raw[b * 1024 : (b + 1) * 1024] for b in fmap.blocks)[: fmap.size]
    assert len(fmap.blocks) == 100 and hashlib.sha256(data).hexdigest() == sums["frag"]
    with pytest.raises(ImageError, match=r"^cannot map 'sparse': unwritten extent"):
        xfs.map_files(image, cfg, ["sparse"])


def test_large_directories(xfs, xfs_config, tmp_path):
    """2,500 names at 1 KiB blocks: the root directory's blocks interleave with the files' so
    its own data fork becomes a B+tree; every file is found and read back."""
    files = {f"f{i:05d}": bytes([i % 251]) * (700 + i % 900) for i in range(2500)}
    cfg = xfs_config(block_size=1024, files=len(files), file_size=1600)
    image = tmp_path / "many.img"
    xfs.make_image(image, cfg, files)

    with XfsReader(image) as reader:
        root = reader.inode(reader.sb.rootino)
        assert root.format == FMT_BTREE
        assert len(reader.directory(reader.sb.rootino)) == len(files)
    assert xfs.read_files(image, cfg, list(files)) == files


def test_small_directories_are_short_form_or_one_block(xfs, xfs_config, tmp_path):
    files = {f"small/f{i}": b"s" * i for i in range(3)}
    files |= {f"block/f{i:03d}": b"b" * i for i in range(40)}
    image = tmp_path / "dirs.img"
    cfg = xfs_config(files=len(files))
    xfs.make_image(image, cfg, files)

    with XfsReader(image) as reader:
        small = reader.inode(reader.lookup("small"))
        block = reader.inode(reader.lookup("block"))
        assert small.format == 1  # XFS_DINODE_FMT_LOCAL: entries inside the inode
        assert block.format == FMT_EXTENTS and block.size == 4096  # one XDB3 block
    assert xfs.read_files(image, cfg, list(files)) == files


def test_superblock_fields_match_xfs_db(xfs, xfs_config, tmp_path):
    """The reader's offsets into ``struct xfs_dsb`` read what xfs_db prints."""
    image = tmp_path / "sb.img"
    xfs.make_image(image, xfs_config(block_size=2048), {"f": b"x"})
    out = subprocess.run(
        ["xfs_db", "-r", "-c", "sb 0", "-c",
         "print blocksize dblocks rootino agblocks agcount inodesize inopblog agblklog dirblklog",
         str(image)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/sbin:/sbin"},
    ).stdout  # fmt: skip
    printed = {k: int(v) for k, v in (line.split(" = ") for line in out.splitlines())}

    with XfsReader(image) as reader:
        sb = reader.sb

    assert {k: getattr(sb, k) for k in printed} == printed
    assert sb.ftype
