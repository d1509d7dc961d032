"""hotremove_e2fs against real images made by the installed e2fsprogs (no mocks)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from hotremove.errors import ImageError, ToolMissing
from hotremove_e2fs import (
    block_maps,
    e2fsprogs_binary,
    fsck,
    make_image,
    read_files,
    run_tool,
)
from hotremove_e2fs.tools import E2fsprogsMissing

MiB = 1 << 20


def random_files(seed: int, sizes: dict[str, int]) -> dict[str, bytes]:
    """Incompressible, distinct contents, so a wrong block can never compare equal by accident."""
    rng = random.Random(seed)
    return {path: rng.randbytes(size) for path, size in sizes.items()}


def assert_maps_hold_the_file_bytes(
    image: Path, files: dict[str, bytes], block_size: int
) -> dict[str, list[int]]:
    """The strongest check: each mapped block of the raw image holds that slice of the file."""
    maps = block_maps(image, list(files))
    raw = image.read_bytes()
    for path, content in files.items():
        assert len(maps[path]) == -(-len(content) // block_size), path
        for logical, physical in enumerate(maps[path]):
            expected = content[logical * block_size : (logical + 1) * block_size]
            on_disk = raw[physical * block_size : physical * block_size + len(expected)]
            assert on_disk == expected, f"{path} logical block {logical} at {physical}"
    return maps


def debugfs_stat(image: Path, path: str) -> str:
    return run_tool("debugfs", ["-R", f"stat /{path}", str(image)]).stdout.decode()


MIXED_SIZES = {"f0001": 1, "f0002": 5000, "dir/f0003": 20_000, "dir/sub/f0004": 0}


@pytest.mark.parametrize(
    ("fstype", "block_size", "big_size", "metadata_label"),
    [
        ("ext2", 1024, 300 * 1024, "(DIND)"),
        ("ext3", 2048, 1100 * 1024, "(DIND)"),
        ("ext4", 4096, 700 * 1024, None),
    ],
)
def test_block_maps_point_at_the_file_bytes_in_the_raw_image(
    tmp_path: Path, fstype: str, block_size: int, big_size: int, metadata_label: str | None
) -> None:
    files = random_files(1, {**MIXED_SIZES, "big": big_size})
    image = tmp_path / "fs.img"
    make_image(image, fstype, block_size, 8 * MiB, files)

    maps = assert_maps_hold_the_file_bytes(image, files, block_size)

    stat = debugfs_stat(image, "big")
    if metadata_label is not None:  # the big file really does go through double-indirect blocks
        metadata = [int(b) for b in re.findall(r"\((?:IND|DIND)\):(\d+)", stat)]
        assert metadata_label in stat
        assert not set(metadata) & set(maps["big"])
    else:
        assert "EXTENTS:" in stat


def test_block_maps_skip_extent_tree_blocks_of_a_fragmented_ext4_file(tmp_path: Path) -> None:
    image = tmp_path / "frag.img"
    make_image(image, "ext4", 1024, 4 * MiB, random_files(2, {f"f{i:02}": 8192 for i in range(40)}))
    big = random_files(3, {"frag": 160_000})
    (tmp_path / "frag.src").write_bytes(big["frag"])
    script = tmp_path / "fragment.cmd"
    removals = "".join(f"rm /f{i:02}\n" for i in range(0, 40, 2))
    script.write_text(f'{removals}write "{tmp_path / "frag.src"}" frag\n')
    run_tool("debugfs", ["-w", "-f", str(script), str(image)])
    assert "(ETB0)" in debugfs_stat(image, "frag")  # more than 4 extents: a tree block exists

    assert_maps_hold_the_file_bytes(image, big, 1024)


def test_block_maps_names_a_missing_file(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext2", 1024, 2 * MiB, {"present": b"x"})

    with pytest.raises(ImageError, match="absent"):
        block_maps(image, ["present", "absent"])


def test_block_maps_refuses_a_map_cut_short_by_truncation(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext2", 1024, 4 * MiB, random_files(4, {"big": 300 * 1024}))
    first_indirect = int(re.search(r"\(IND\):(\d+)", debugfs_stat(image, "big")).group(1))
    with image.open("r+b") as handle:
        handle.truncate(first_indirect * 1024)

    with pytest.raises(ImageError, match="big") as caught:
        block_maps(image, ["big"])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4"])
def test_read_files_returns_exactly_the_bytes_written(tmp_path: Path, fstype: str) -> None:
    files = random_files(5, {**MIXED_SIZES, "big": 300 * 1024})
    image = tmp_path / "fs.img"
    make_image(image, fstype, 1024, 4 * MiB, files)

    assert read_files(image, list(files)) == files


def test_read_files_names_a_missing_path(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext2", 1024, 2 * MiB, {"here": b"x"})

    with pytest.raises(ImageError, match="nowhere/gone"):
        read_files(image, ["here", "nowhere/gone"])


@pytest.mark.parametrize("keep", ["superblock_only", "up_to_file_data"])
def test_read_files_on_a_truncated_image_is_a_one_line_image_error(
    tmp_path: Path, keep: str
) -> None:
    files = random_files(6, {"big": 300 * 1024})
    image = tmp_path / "fs.img"
    make_image(image, "ext2", 1024, 4 * MiB, files)
    cut = 100 if keep == "superblock_only" else block_maps(image, ["big"])["big"][20] * 1024
    with image.open("r+b") as handle:
        handle.truncate(cut)

    with pytest.raises(ImageError) as caught:
        read_files(image, ["big"])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4"])
def test_fsck_is_clean_on_a_fresh_image(tmp_path: Path, fstype: str) -> None:
    image = tmp_path / "home.img"
    make_image(image, fstype, 1024, 4 * MiB, random_files(7, MIXED_SIZES))

    verdict = fsck(image)

    assert verdict.ok and verdict.returncode == 0
    assert re.search(r"home\.img: \d+/\d+ files .* \d+/\d+ blocks", verdict.summary)
    assert verdict.summary in verdict.output


def test_fsck_reports_a_destroyed_superblock_magic(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext4", 1024, 4 * MiB, random_files(8, MIXED_SIZES))
    with image.open("r+b") as handle:  # s_magic: superblock at 1024, magic at offset 56
        handle.seek(1024 + 56)
        handle.write(b"\x00\x00")

    verdict = fsck(image)

    assert not verdict.ok and verdict.returncode != 0
    assert "magic" in verdict.summary.lower()


def test_fsck_reports_garbage_in_the_inode_table(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext2", 1024, 4 * MiB, random_files(9, MIXED_SIZES))
    imap = run_tool("debugfs", ["-R", "imap /f0002", str(image)]).stdout.decode()
    inode_block = int(re.search(r"located at block (\d+)", imap).group(1))
    with image.open("r+b") as handle:
        handle.seek(inode_block * 1024)
        handle.write(random.Random(10).randbytes(1024))

    verdict = fsck(image)

    assert not verdict.ok and verdict.returncode == 4  # errors left uncorrected (read-only)


def test_make_image_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    files = random_files(11, MIXED_SIZES)
    for name in ("a.img", "b.img"):
        make_image(tmp_path / name, "ext4", 4096, 8 * MiB, files, data_mode="journal")

    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()


def test_make_image_sets_journal_data_mode_as_a_default_mount_option(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_image(image, "ext3", 2048, 8 * MiB, {"f": b"x"}, data_mode="journal")

    stats = run_tool("debugfs", ["-R", "stats -h", str(image)]).stdout.decode()
    assert re.search(r"^Default mount options:.*\bjournal_data\b", stats, re.MULTILINE)
    assert "has_journal" in stats


def test_make_image_says_in_one_line_when_files_do_not_fit_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    image = tmp_path / "small.img"

    with pytest.raises(ImageError, match="do not fit in a 2 MiB") as caught:
        make_image(image, "ext2", 1024, 2 * MiB, random_files(12, {"huge": 3 * MiB}))

    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_make_image_rejects_an_unknown_filesystem_type(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="xfs"):
        make_image(tmp_path / "fs.img", "xfs", 4096, 8 * MiB, {})
    assert list(tmp_path.iterdir()) == []


def test_make_image_refuses_ext3_too_small_for_a_journal(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="too small for a journal"):
        make_image(tmp_path / "fs.img", "ext3", 4096, 2 * MiB, {})
    assert list(tmp_path.iterdir()) == []


def test_e2fsprogs_binary_finds_mke2fs_as_an_absolute_path() -> None:
    assert Path(e2fsprogs_binary("mke2fs")).is_absolute()


def test_e2fsprogs_binary_says_how_to_install_a_missing_tool() -> None:
    with pytest.raises(E2fsprogsMissing, match="apt-get install e2fsprogs") as caught:
        e2fsprogs_binary("mke2fs-does-not-exist")
    assert isinstance(caught.value, ToolMissing), "the core's one-line error for a missing tool"
    assert "mke2fs-does-not-exist" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_run_tool_failure_is_one_line_naming_the_tool(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^tune2fs failed .*: \S") as caught:
        run_tool("tune2fs", ["-l", str(tmp_path / "no-such.img")])
    assert "\n" not in str(caught.value)
