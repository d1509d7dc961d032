"""The btrfs type on real images made by btrfs-progs: built, mapped, checked and read back; what
the checker and the reader notice when a byte changes; what the simulator's in-place writeback
does to the data checksums; every refusal as one line naming its key or package."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from hotremove.errors import HotremoveError, ImageError, ToolMissing
from hotremove.kernels import KERNELS
from hotremove.plugins import load_plugins
from hotremove.scenario import FilesystemConfig
from hotremove_btrfs.dumptree import parse_chunk_tree, parse_fs_tree
from hotremove_btrfs.fstype import BtrfsType
from hotremove_btrfs.mkfs import MIN_DEV_SIZE, fsid

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.btrfs", path="/usr/sbin:/sbin:/usr/bin") is None,
    reason="btrfs-progs is not installed (apt-get install btrfs-progs)",
)

MiB = 1 << 20
#: a few sizes: one sector, a partial last sector, 64 KiB, two 1 MiB extents and a tail
SIZES = (4096, 3 * 4096 + 100, 64 << 10, MiB + MiB + 5000)


def config(**kw) -> FilesystemConfig:
    """A ``[[filesystem]]`` table of type btrfs (built without the core's validation, which
    does not know plugin types yet: ``validate`` is what is under test)."""
    table = {
        "name": "data",
        "type": "btrfs",
        "block_size": 4096,
        "size": 64 * MiB,
        "files": 8,
        "file_size": 64 << 10,
        "options": [],
    }
    return FilesystemConfig.model_construct(**{**table, **kw})


def some_files(n: int = 12, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"f{i:05d}": rng.randbytes(SIZES[i % len(SIZES)]) for i in range(n)}
    files["empty"] = b""
    return files


@pytest.fixture(scope="module")
def btrfs() -> BtrfsType:
    """The type as the core finds it: through the installed entry point."""
    fs_type, plugin = load_plugins().fs_types["btrfs"]
    assert plugin == "btrfs" and isinstance(fs_type, BtrfsType)
    return fs_type


@pytest.fixture(scope="module")
def made(btrfs, tmp_path_factory) -> tuple[Path, FilesystemConfig, dict[str, bytes]]:
    files = some_files()
    cfg = config(files=len(files))
    image = tmp_path_factory.mktemp("btrfs") / "data.img"
    btrfs.make_image(image, cfg, files)
    return image, cfg, files


def read_blocks(image: Path, blocks: tuple[int, ...], size: int, block_size: int = 4096) -> bytes:
    with open(image, "rb") as handle:
        chunks = []
        for block in blocks:
            handle.seek(block * block_size)
            chunks.append(handle.read(block_size))
    return b"".join(chunks)[:size]


def copy_of(image: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.img"
    shutil.copyfile(image, copy)
    return copy


# -- the round trip ---------------------------------------------------------------------------
def test_round_trip_maps_reads_and_checks_clean(btrfs, made):
    image, cfg, files = made
    assert image.stat().st_size == cfg.size
    maps = btrfs.map_files(image, cfg, list(files))

    for path, content in files.items():
        fmap = maps[path]
        assert fmap.size == len(content)
        assert len(fmap.blocks) == -(-len(content) // 4096)
        assert read_blocks(image, fmap.blocks, fmap.size) == content, path
    every = [b for m in maps.values() for b in m.blocks]
    assert len(every) == len(set(every)), "no block is shared by two files or two pages"
    assert btrfs.read_files(image, cfg, list(files)) == files
    verdict = btrfs.check(image, cfg)
    assert verdict.ok, verdict.summary
    assert btrfs.data_csum_errors(image) == [], "mkfs wrote a checksum for every sector"


def test_equal_inputs_give_equal_maps_and_the_name_gives_the_fsid(btrfs, made, tmp_path):
    image, cfg, files = made
    again = tmp_path / "again.img"
    btrfs.make_image(again, cfg, files)
    other = tmp_path / "other.img"
    btrfs.make_image(other, config(name="other", files=len(files)), files)

    assert btrfs.map_files(again, cfg, list(files)) == btrfs.map_files(image, cfg, list(files))
    fsids = [superblock_fsid(p) for p in (image, again, other)]
    assert fsids == [fsid("data"), fsid("data"), fsid("other")] and fsid("data") != fsid("other")


def superblock_fsid(image: Path) -> str:
    out = subprocess.run(
        ["btrfs", "inspect-internal", "dump-super", str(image)], capture_output=True, text=True
    ).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("fsid"))


def test_maps_follow_the_chunk_tree_where_logical_is_not_physical(btrfs, tmp_path):
    """mkfs.btrfs's defaults (DUP metadata) put data chunks at logical addresses that differ
    from their device offsets: the map must translate through the chunk tree."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    files = {f"g{i:03d}": rng.randbytes(256 << 10) for i in range(160)}
    for name, content in files.items():
        (src / name).write_bytes(content)
    image = tmp_path / "dup.img"
    image.write_bytes(b"")
    with open(image, "r+b") as handle:
        handle.truncate(200 * MiB)
    subprocess.run(
        ["mkfs.btrfs", "-q", "-f", "-K", "--rootdir", str(src), str(image)],
        check=True,
        capture_output=True,
    )
    chunk_text = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", str(image)],
        capture_output=True,
        text=True,
    ).stdout
    moved = [c for c in parse_chunk_tree(chunk_text).chunks if c.stripes[0] != c.start]
    assert any("DATA" in c.flags for c in moved), "the case under test: a displaced data chunk"

    cfg = config(size=200 * MiB, files=len(files), file_size=256 << 10)
    maps = btrfs.map_files(image, cfg, list(files))
    for path, content in files.items():
        assert read_blocks(image, maps[path].blocks, len(content)) == content, path


def test_inline_files_are_refused_by_the_map_and_by_validate(btrfs, tmp_path):
    image = tmp_path / "inline.img"
    cfg = config(files=2, file_size=100)
    btrfs.make_image(image, cfg, {"tiny": b"x" * 100, "big": b"y" * 8192})

    with pytest.raises(ImageError, match=r"'tiny'.*inline"):
        btrfs.map_files(image, cfg, ["tiny", "big"])
    assert btrfs.map_files(image, cfg, ["big"])["big"].size == 8192
    with pytest.raises(ValueError, match=r"^file_size: .*inline"):
        btrfs.validate(cfg)


# -- what notices a changed byte -----------------------------------------------------------
def test_a_flipped_data_byte_is_read_back_and_its_checksum_fails(btrfs, made, tmp_path):
    image, cfg, files = made
    copy = copy_of(image, tmp_path)
    victim = "f00002"
    block = btrfs.map_files(copy, cfg, [victim])[victim].blocks[1]
    with open(copy, "r+b") as handle:
        handle.seek(block * 4096 + 17)
        byte = handle.read(1)[0]
        handle.seek(block * 4096 + 17)
        handle.write(bytes([byte ^ 0xFF]))

    back = btrfs.read_files(copy, cfg, list(files))
    assert [p for p in files if back[p] != files[p]] == [victim]
    assert back[victim][4096 + 17] == byte ^ 0xFF, "restore returns the bytes on disk"
    assert btrfs.check(copy, cfg).ok, "check --readonly does not read data (module doc)"
    assert btrfs.data_csum_errors(copy) == [logical_of(copy, block)]


def logical_of(image: Path, block: int) -> int:
    """The logical address of image block ``block`` (the inverse of the chunk map)."""
    text = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", str(image)],
        capture_output=True,
        text=True,
    ).stdout
    physical = block * 4096
    for chunk in parse_chunk_tree(text).chunks:
        if "DATA" in chunk.flags and chunk.stripes[0] <= physical < chunk.stripes[0] + chunk.length:
            return chunk.start + physical - chunk.stripes[0]
    raise AssertionError(f"block {block} is in no data chunk")


def test_the_simulators_writeback_leaves_stale_checksums_only(btrfs, made, tmp_path):
    """What a synced simulation leaves: a dirty file written home at its mapped blocks (no
    copy-on-write, no metadata). The checker stays clean, the reader returns the new bytes,
    and every sector written — and only those — fails its data checksum."""
    image, cfg, files = made
    copy = copy_of(image, tmp_path)
    victim = "f00003"
    fmap = btrfs.map_files(copy, cfg, [victim])[victim]
    new = random.Random(3).randbytes(fmap.size)
    with open(copy, "r+b") as handle:
        for i, block in enumerate(fmap.blocks):
            handle.seek(block * 4096)
            handle.write(new[i * 4096 : (i + 1) * 4096])

    assert btrfs.check(copy, cfg).ok
    assert btrfs.read_files(copy, cfg, list(files)) == {**files, victim: new}
    assert btrfs.data_csum_errors(copy) == sorted(logical_of(copy, b) for b in fmap.blocks)


def test_a_flipped_metadata_byte_fails_the_checker(btrfs, made, tmp_path):
    image, cfg, _ = made
    copy = copy_of(image, tmp_path)
    fs_text = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "fs", str(copy)],
        capture_output=True,
        text=True,
    ).stdout
    leaf = next(int(line.split()[1]) for line in fs_text.splitlines() if line.startswith("leaf"))
    chunk_text = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", str(copy)],
        capture_output=True,
        text=True,
    ).stdout
    chunk = parse_chunk_tree(chunk_text).chunk_of(leaf)
    offset = chunk.stripes[0] + leaf - chunk.start + 8000  # inside the leaf's items
    with open(copy, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0xFF]))

    verdict = btrfs.check(copy, cfg)
    assert not verdict.ok
    assert verdict.summary.startswith("btrfs check --readonly:") and "\n" not in verdict.summary


def test_the_fs_tree_parser_sees_every_file(made):
    image, _, files = made
    text = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "fs", str(image)],
        capture_output=True,
        text=True,
    ).stdout
    tree = parse_fs_tree(text)
    assert set(tree.entries[256]) == set(files)
    assert {p: tree.inodes[tree.lookup(p)].size for p in files} == {
        p: len(c) for p, c in files.items()
    }


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"block_size": 1024}, "block_size"),
        ({"block_size": 2048}, "block_size"),
        ({"size": 32 * MiB}, "size"),
        ({"size": 16 << 30}, "size"),
        ({"options": ["compress=zstd"]}, "options"),
        ({"file_size": 2048}, "file_size"),
        ({"files": 1000, "file_size": MiB, "size": 512 * MiB}, "files"),
        ({"files": 4000, "file_size": 4096, "size": 64 * MiB}, "files"),
    ],
)
def test_validate_refusals_name_their_key(btrfs, table, key):
    with pytest.raises(ValueError) as refused:
        btrfs.validate(config(**table))
    message = str(refused.value)
    assert message.startswith(f"{key}: ") and "\n" not in message


def test_validate_accepts_what_mkfs_makes(btrfs):
    btrfs.validate(config())
    btrfs.validate(config(size=MIN_DEV_SIZE, files=8, file_size=1 * MiB))
    btrfs.validate(config(files=0))


def test_files_that_do_not_fit_are_one_line_and_leave_no_image(btrfs, tmp_path):
    image = tmp_path / "full.img"
    cfg = config(size=48 * MiB, files=40, file_size=MiB)
    with pytest.raises(ValueError, match=r"^files: "):
        btrfs.validate(cfg)
    files = {f"f{i:05d}": bytes([i]) * MiB for i in range(40)}

    with pytest.raises(ImageError) as refused:
        btrfs.make_image(image, cfg, files)

    assert "do not fit" in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == [], "no image, no temporary file or directory"


def test_a_missing_tool_names_the_package(btrfs, made, tmp_path, monkeypatch):
    image, cfg, files = made
    monkeypatch.setenv("PATH", str(tmp_path))  # mkfs.btrfs is still found in /usr/sbin
    calls = {
        "make_image": lambda: btrfs.make_image(tmp_path / "x.img", cfg, files),
        "map_files": lambda: btrfs.map_files(image, cfg, list(files)),
        "check": lambda: btrfs.check(image, cfg),
        "read_files": lambda: btrfs.read_files(image, cfg, list(files)),
    }
    for name, call in calls.items():
        with pytest.raises(ToolMissing) as missing:
            call()
        assert "apt-get install btrfs-progs" in str(missing.value), name
        assert isinstance(missing.value, HotremoveError)


def test_a_guest_loads_crc32c_before_btrfs(btrfs):
    for version in ("6.1", "6.12"):
        mount = btrfs.guest(config(), KERNELS[version])
        assert (mount.fstype, mount.options) == ("btrfs", ())
        assert mount.modules[-1] == "btrfs" and "crc32c_generic" in mount.modules
