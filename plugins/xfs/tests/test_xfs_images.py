"""Real XFS images through the registered type: made by mkfs.xfs, mapped by xfs_db, checked by
xfs_repair, read back by the plugin's own on-disk reader — and every answer held to the
image's bytes."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from hotremove.errors import HotremoveError, ImageError, ToolMissing
from hotremove_xfs.mkfs import FIXED_TIME

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.xfs", path="/usr/sbin:/sbin:/usr/bin") is None,
    reason="xfsprogs is not installed (apt-get install xfsprogs)",
)


def sample_files(block_size: int, seed: int = 1) -> dict[str, bytes]:
    """Files of a few sizes around block and page edges, one in a subdirectory."""
    rng = random.Random(seed)
    sizes = [0, 1, block_size - 1, block_size, block_size + 1, 3 * 4096 + 5, 100 << 10]
    files = {f"f{i:05d}": rng.randbytes(size) for i, size in enumerate(sizes)}
    files["sub/dir/g00000"] = rng.randbytes(2 * block_size + 7)
    return files


def bytes_at(image, block_size: int, blocks, size: int) -> bytes:
    """A file as its map says: the image's bytes at each mapped block, cut to its size."""
    with open(image, "rb") as f:
        chunks = []
        for block in blocks:
            f.seek(block * block_size)
            chunks.append(f.read(block_size))
    return b"".join(chunks)[:size]


@pytest.mark.parametrize("block_size", [1024, 2048, 4096])
def test_round_trip(xfs, xfs_config, tmp_path, block_size):
    """make → map (xfs_db) → the mapped blocks hold each file; read back (own reader);
    xfs_repair finds nothing."""
    files = sample_files(block_size)
    cfg = xfs_config(block_size=block_size, files=len(files), file_size=100 << 10)
    image = tmp_path / "xfs.img"

    xfs.make_image(image, cfg, files)

    assert image.stat().st_size == cfg.size
    assert [p.name for p in tmp_path.iterdir()] == ["xfs.img"], "no scratch left behind"
    maps = xfs.map_files(image, cfg, list(files))
    for path, data in files.items():
        fmap = maps[path]
        assert fmap.size == len(data)
        assert len(fmap.blocks) == -(-len(data) // block_size)
        assert bytes_at(image, block_size, fmap.blocks, fmap.size) == data, path
    all_blocks = [b for m in maps.values() for b in m.blocks]
    assert len(set(all_blocks)) == len(all_blocks), "no block belongs to two files"
    assert xfs.read_files(image, cfg, list(files)) == files
    verdict = xfs.check(image, cfg)
    assert verdict.ok, verdict.summary


def test_equal_inputs_give_identical_images(xfs, xfs_config, tmp_path):
    """mkfs.xfs stamps inodes with the current time (to the nanosecond); the plugin rewrites
    every timestamp, so two builds are byte-identical and say 2001-09-09."""
    files = sample_files(1024)
    cfg = xfs_config(block_size=1024, files=len(files))
    first, second = tmp_path / "a.img", tmp_path / "b.img"

    xfs.make_image(first, cfg, files)
    xfs.make_image(second, cfg, files)

    assert first.read_bytes() == second.read_bytes()
    out = subprocess.run(
        ["xfs_db", "-r", "-c", "path /f00003", "-c", "print core.mtime.sec v3.crtime.sec",
         str(first)],
        capture_output=True, text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/sbin:/sbin"},
    ).stdout  # fmt: skip
    assert out.split("\n")[:2] == [
        "core.mtime.sec = Sun Sep  9 01:46:40 2001",
        "v3.crtime.sec = Sun Sep  9 01:46:40 2001",
    ]
    assert FIXED_TIME == 1_000_000_000


def test_a_flipped_data_byte_is_read_back(xfs, xfs_config, tmp_path):
    """XFS checksums metadata, not data: xfs_repair stays content, the reader returns the
    changed byte (which verification then compares with the golden model)."""
    files = sample_files(4096)
    cfg = xfs_config(files=len(files))
    image = tmp_path / "xfs.img"
    xfs.make_image(image, cfg, files)
    victim = "f00005"
    block = xfs.map_files(image, cfg, [victim])[victim].blocks[1]

    with open(image, "r+b") as f:
        f.seek(block * 4096 + 17)
        byte = f.read(1)
        f.seek(block * 4096 + 17)
        f.write(bytes([byte[0] ^ 0x5A]))

    back = xfs.read_files(image, cfg, list(files))
    assert back[victim] != files[victim]
    assert back[victim][4096 + 17] == files[victim][4096 + 17] ^ 0x5A
    assert {p: d for p, d in back.items() if p != victim} == {
        p: d for p, d in files.items() if p != victim
    }
    assert xfs.check(image, cfg).ok


def test_a_damaged_inode_fails_the_check(xfs, xfs_config, tmp_path):
    """Flip a byte of a file's inode (its size): the inode's CRC no longer matches."""
    files = sample_files(4096)
    cfg = xfs_config(files=len(files))
    image = tmp_path / "xfs.img"
    xfs.make_image(image, cfg, files)
    out = subprocess.run(
        ["xfs_db", "-r", "-c", "path /f00004", "-c", "inode", str(image)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/sbin:/sbin"},
    ).stdout  # fmt: skip
    ino = int(out.split()[-1])
    byte = subprocess.run(
        ["xfs_db", "-r", "-c", f"convert inode {ino} byte", str(image)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/sbin:/sbin"},
    ).stdout  # fmt: skip
    offset = int(byte.split()[0], 16) + 56 + 3  # di_size, a middle byte

    with open(image, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))

    damaged = image.read_bytes()

    verdict = xfs.check(image, cfg)

    assert not verdict.ok
    assert f"inode {ino}" in verdict.summary and "\n" not in verdict.summary
    assert image.read_bytes() == damaged, "xfs_repair -n changes nothing"


def test_files_that_cannot_fit_are_refused_by_validate(xfs, xfs_config):
    """16 MB of bytes, but each 4097-byte file takes two 4 KiB blocks and a 512-byte inode:
    34.8 MB, more than the image."""
    cfg = xfs_config(size=32 << 20, files=4000, file_size=4097)

    with pytest.raises(ValueError, match=r"^files: 4000 files of 4097 bytes need 34816000 "):
        xfs.validate(cfg)


def test_files_beyond_the_log_and_metadata_are_a_one_line_image_error(xfs, xfs_config, tmp_path):
    """Blocks plus inodes fit in 32 MiB, but the log (~5 MiB at 4 KiB blocks) does not leave
    room: validate says so as mkfs.xfs would (hotremove_xfs.fit), and make_image, called
    without it, turns mkfs.xfs's ENOSPC into one line naming the files and leaves no image."""
    cfg = xfs_config(size=32 << 20, files=30, file_size=1 << 20)
    with pytest.raises(ValueError, match=r"^files: 30 files of 1048576 bytes do not fit in a "):
        xfs.validate(cfg)
    files = {f"f{i:05d}": bytes([i]) * (1 << 20) for i in range(30)}

    with pytest.raises(ImageError) as err:
        xfs.make_image(tmp_path / "xfs.img", cfg, files)

    message = str(err.value)
    assert message.startswith("files: 30 files of 1048576 bytes do not fit") and "\n" not in message
    assert "No space left on device" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"block_size": 512}, "block_size"),
        ({"block_size": 8192}, "block_size"),
        ({"size": 16 << 20}, "size"),
        ({"size": 16 << 30}, "size"),
        ({"options": ["dax"]}, "options"),
        ({"options": ["data=journal"]}, "options"),
        ({"files": 2000, "file_size": 1 << 20}, "files"),
    ],
)
def test_each_refusal_names_its_key(xfs, xfs_config, table, key):
    with pytest.raises(ValueError, match=rf"^{key}: "):
        xfs.validate(xfs_config(**table))


@pytest.mark.parametrize("block_size", [1024, 2048, 4096])
def test_smallest_and_default_tables_are_accepted(xfs, xfs_config, block_size):
    xfs.validate(xfs_config(block_size=block_size, size=32 << 20, files=4, file_size=1 << 20))
    xfs.validate(xfs_config(block_size=block_size))


def test_a_missing_program_names_the_package(xfs, xfs_config, tmp_path, monkeypatch):
    """Every operation that runs a program asks ``require_tools`` first. xfsprogs is installed
    here and the core also searches /usr/sbin and /sbin, so its absence is staged by asking
    for a program name that exists nowhere."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(xfs, "tools", {**xfs.tools, "xfs_repair.absent": "xfsprogs"})
    cfg = xfs_config()
    image = tmp_path / "xfs.img"

    for call in (
        lambda: xfs.make_image(image, cfg, {"f": b"x"}),
        lambda: xfs.map_files(image, cfg, ["f"]),
        lambda: xfs.check(image, cfg),
    ):
        with pytest.raises(ToolMissing, match=r"xfs_repair\.absent not found \(apt-get install "
                           r"xfsprogs\)"):  # fmt: skip
            call()
    assert not image.exists()


def test_unknown_paths_and_foreign_images_are_one_line_errors(xfs, xfs_config, tmp_path):
    files = sample_files(4096)
    cfg = xfs_config(files=len(files))
    image = tmp_path / "xfs.img"
    xfs.make_image(image, cfg, files)
    foreign = tmp_path / "zeros.img"
    foreign.write_bytes(bytes(1 << 20))

    for call in (
        lambda: xfs.map_files(image, cfg, ["nope"]),
        lambda: xfs.read_files(image, cfg, ["sub/nope"]),
        lambda: xfs.read_files(image, cfg, ["sub"]),
        lambda: xfs.map_files(foreign, cfg, ["f00000"]),
        lambda: xfs.read_files(foreign, cfg, ["f00000"]),
    ):
        with pytest.raises(HotremoveError) as err:
            call()
        assert "\n" not in str(err.value)


def test_names_a_protofile_cannot_hold_are_refused(xfs, xfs_config, tmp_path):
    for bad in ("with space", "colon:name", "$", "a/../b"):
        with pytest.raises(ImageError, match="protofile"):
            xfs.make_image(tmp_path / "xfs.img", xfs_config(), {bad: b"x"})
    assert list(tmp_path.iterdir()) == []
