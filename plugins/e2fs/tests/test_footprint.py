"""The footprint bound ext types validate with: what it refuses mke2fs cannot make, and what
it accepts with a few percent to spare mke2fs makes (``scenario check`` ≡ ``run``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotremove.errors import ImageError
from hotremove_e2fs import footprint, make_image

CASES = [  # (type, block size, image size)
    ("ext2", 1024, 8 << 20),
    ("ext2", 4096, 16 << 20),
    ("ext3", 1024, 8 << 20),
    ("ext3", 4096, 16 << 20),
    ("ext4", 1024, 8 << 20),
    ("ext4", 4096, 16 << 20),
]


def _files_at(fstype: str, block_size: int, size: int, share: float) -> tuple[int, int]:
    """(files, file_size): 4 files whose bound is ``share`` of the image's blocks."""
    blocks = size // block_size
    journalled, extents = fstype != "ext2", fstype == "ext4"
    file_size = block_size
    while (
        footprint.least_blocks(
            size, block_size, 4, file_size + block_size, journalled=journalled, extents=extents
        )
        <= blocks * share
    ):
        file_size += block_size
    return 4, file_size


@pytest.mark.parametrize(("fstype", "block_size", "size"), CASES)
def test_what_the_bound_refuses_mke2fs_cannot_make(
    tmp_path: Path, fstype: str, block_size: int, size: int
) -> None:
    files, file_size = _files_at(fstype, block_size, size, 1.0)
    file_size += block_size  # the first size past the bound
    data = {f"f{i}": bytes([i + 1]) * file_size for i in range(files)}
    with pytest.raises(ImageError, match="do not fit"):
        make_image(tmp_path / "x.img", fstype, block_size, size, data)


@pytest.mark.parametrize(("fstype", "block_size", "size"), CASES)
def test_what_the_bound_accepts_with_ten_percent_spare_mke2fs_makes(
    tmp_path: Path, fstype: str, block_size: int, size: int
) -> None:
    files, file_size = _files_at(fstype, block_size, size, 0.9)
    data = {f"f{i}": bytes([i + 1]) * file_size for i in range(files)}
    make_image(tmp_path / "x.img", fstype, block_size, size, data)


def test_an_image_under_2048_blocks_gets_no_journal() -> None:
    assert footprint.journal_blocks(2047) == 0
    assert footprint.journal_blocks(2048) == 1024
    assert footprint.journal_blocks(65536) == 4096


def test_indirect_blocks_of_an_ext2_file() -> None:
    assert footprint.indirect_blocks(12, 1024) == 0
    assert footprint.indirect_blocks(13, 1024) == 1
    assert footprint.indirect_blocks(12 + 256, 1024) == 1
    # one more: the double-indirect block and its first leaf
    assert footprint.indirect_blocks(12 + 256 + 1, 1024) == 3
