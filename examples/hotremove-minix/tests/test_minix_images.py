"""Real minix v3 images, round trip: made by ``mkfs.minix -3`` plus the plugin's writer, mapped
and read back by the plugin's own parser, checked by ``fsck.minix``; and what each of them
says when something is wrong."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path
from typing import ClassVar

import pytest

from hotremove.errors import ImageError, ToolMissing

MiB = 1 << 20
KiB = 1 << 10

#: sizes around every edge of the zone tree: empty, partial block, whole blocks, the last
#: direct block, the first single-indirect one, the first double-indirect one
SIZES = (0, 1, 1000, 1024, 4096, 7 * KiB, 7 * KiB + 1, 100_000, 263 * KiB, 263 * KiB + 5)


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


FILES = {f"f{i:05d}": payload(i, size) for i, size in enumerate(SIZES)}


def blocks_at(image: Path, blocks: tuple[int, ...], size: int) -> bytes:
    """What the image holds at ``blocks`` (1 KiB each), cut to ``size``: the file the map
    claims, read with no help from the plugin."""
    with image.open("rb") as f:
        parts = []
        for block in blocks:
            f.seek(block * KiB)
            parts.append(f.read(KiB))
    return b"".join(parts)[:size]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, minix_type, minix_config) -> Path:
    path = tmp_path_factory.mktemp("minix") / "mx.img"
    minix_type.make_image(path, minix_config(size=4 * MiB, files=len(FILES)), FILES)
    return path


def test_map_files_agrees_with_the_bytes_on_the_image(image, minix_type, minix_config):
    maps = minix_type.map_files(image, minix_config(), list(FILES))

    for name, data in FILES.items():
        assert maps[name].size == len(data)
        assert len(maps[name].blocks) == -(-len(data) // KiB)
        assert blocks_at(image, maps[name].blocks, len(data)) == data, name
    every = [b for m in maps.values() for b in m.blocks]
    assert len(every) == len(set(every)), "two files share a block"


def test_read_files_gives_every_file_back(image, minix_type, minix_config):
    assert minix_type.read_files(image, minix_config(), list(FILES)) == FILES


def test_fsck_finds_the_image_clean(image, minix_type, minix_config):
    verdict = minix_type.check(image, minix_config())

    assert verdict.ok, verdict.summary
    assert f"{len(FILES)} regular files" in verdict.summary


def test_equal_inputs_give_equal_bytes(tmp_path, image, minix_type, minix_config):
    again = tmp_path / "again.img"
    minix_type.make_image(again, minix_config(size=4 * MiB, files=len(FILES)), FILES)

    assert (
        hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(image.read_bytes()).digest()
    )


def test_a_file_past_the_double_indirect_block_round_trips(tmp_path, minix_type, minix_config):
    """7 + 256 + 65,536 blocks fill the direct, single and double indirect zones: one block
    more needs the triple indirect zone."""
    data = payload(99, (7 + 256 + 65536 + 3) * KiB + 17)
    cfg = minix_config(size=72 * MiB, files=1, file_size=len(data))
    minix_type.validate(cfg)
    path = tmp_path / "big.img"
    minix_type.make_image(path, cfg, {"big": data})

    (mapped,) = minix_type.map_files(path, cfg, ["big"]).values()
    assert blocks_at(path, mapped.blocks, mapped.size) == data
    assert minix_type.read_files(path, cfg, ["big"]) == {"big": data}
    assert minix_type.check(path, cfg).ok


def test_a_damaged_data_byte_reads_back_damaged(tmp_path, image, minix_type, minix_config):
    """fsck.minix reads no data zone: the reader is what notices, against the golden bytes."""
    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(image.read_bytes())
    victim = "f00007"
    (mapped,) = minix_type.map_files(damaged, minix_config(), [victim]).values()
    offset = mapped.blocks[3] * KiB + 100
    raw = bytearray(damaged.read_bytes())
    raw[offset] ^= 0xFF
    damaged.write_bytes(raw)

    back = minix_type.read_files(damaged, minix_config(), list(FILES))

    assert [name for name in FILES if back[name] != FILES[name]] == [victim]
    diff = [i for i, (a, b) in enumerate(zip(back[victim], FILES[victim], strict=True)) if a != b]
    assert diff == [3 * KiB + 100]


def _super(raw: bytes) -> tuple[int, ...]:
    return struct.unpack_from("<IHHHHHHIIHHHB", raw, KiB)


def _inode_at(raw: bytes, ino: int) -> int:
    _, _, imap, zmap = _super(raw)[:4]
    return (2 + imap + zmap) * KiB + (ino - 1) * 64


def _damage(image: Path, tmp_path: Path, how: str) -> Path:
    raw = bytearray(image.read_bytes())
    first_zone = _super(raw)[4]
    first_data = struct.unpack_from("<I", raw, _inode_at(raw, 3) + 24)[0]  # f00001's zone 0
    if how == "zone bit cleared":
        bit = first_data - first_zone + 1
        raw[(2 + _super(raw)[2]) * KiB + bit // 8] &= ~(1 << bit % 8)
    elif how == "zone shared":  # f00002's first zone becomes f00001's
        struct.pack_into("<I", raw, _inode_at(raw, 4) + 24, first_data)
    elif how == "zone out of range":
        struct.pack_into("<I", raw, _inode_at(raw, 4) + 24, 10**6)
    elif how == "bad magic":
        struct.pack_into("<H", raw, KiB + 24, 0x137F)  # a minix v1 magic
    path = tmp_path / f"{how.replace(' ', '-')}.img"
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("zone bit cleared", "is marked not in use"),
        ("zone shared", "Block has been used before"),
        ("zone out of range", "Zone nr >= ZONES"),
        ("bad magic", ""),
    ],
)
def test_damaged_metadata_is_reported_by_fsck_without_repairing_it(
    tmp_path, image, minix_type, minix_config, how, said
):
    damaged = _damage(image, tmp_path, how)
    before = damaged.read_bytes()

    verdict = minix_type.check(damaged, minix_config())

    assert not verdict.ok
    assert verdict.summary.startswith("fsck.minix -fv (exit ") and said in verdict.summary
    assert "\n" not in verdict.summary
    assert damaged.read_bytes() == before, "the check must be read-only"


@pytest.mark.parametrize(
    ("how", "said"),
    [("bad magic", "not a minix v3 filesystem"), ("zone out of range", "outside the data zones")],
)
def test_the_reader_refuses_damaged_metadata_in_one_line(
    tmp_path, image, minix_type, minix_config, how, said
):
    damaged = _damage(image, tmp_path, how)

    with pytest.raises(ImageError, match=said) as caught:
        minix_type.read_files(damaged, minix_config(), list(FILES))
    assert "\n" not in str(caught.value)


def test_a_truncated_image_is_one_line(tmp_path, image, minix_type, minix_config):
    short = tmp_path / "short.img"
    short.write_bytes(image.read_bytes()[: 200 * KiB])

    with pytest.raises(ImageError, match="the image ends before zone") as caught:
        minix_type.read_files(short, minix_config(), list(FILES))
    assert "\n" not in str(caught.value)


def test_a_name_not_on_the_image_is_one_line(image, minix_type, minix_config):
    with pytest.raises(ImageError, match="no file 'nope'"):
        minix_type.map_files(image, minix_config(), ["nope"])


def test_validate_and_mkfs_agree_on_what_fits(tmp_path, minix_type, minix_config):
    """1 MiB: mkfs.minix gives 352 inodes and 998 data zones; 10 KiB files take 11 zones each
    (one single indirect), the root directory 6 for 90 entries: 90 fit, 91 do not."""
    fits = minix_config(size=1 * MiB, files=90, file_size=10 * KiB)
    minix_type.validate(fits)
    minix_type.make_image(
        tmp_path / "full.img", fits, {f"f{i}": payload(i, 10 * KiB) for i in range(90)}
    )
    assert minix_type.check(tmp_path / "full.img", fits).ok

    too_many = minix_config(size=1 * MiB, files=91, file_size=10 * KiB)
    with pytest.raises(ValueError, match=r"^files: 91 files of 10240 bytes need 1007 data zones"):
        minix_type.validate(too_many)
    with pytest.raises(ImageError, match=r"^minix image is full: no free zone left$"):
        minix_type.make_image(
            tmp_path / "over.img", too_many, {f"f{i}": payload(i, 10 * KiB) for i in range(91)}
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.img"], "no half-made image"


def test_more_files_than_default_inodes_get_enough_inodes(tmp_path, minix_type, minix_config):
    """mkfs.minix's default is one inode per 3 blocks: 600 empty files on 1 MiB need -i."""
    cfg = minix_config(size=1 * MiB, files=600, file_size=0)
    minix_type.validate(cfg)
    files = {f"e{i:04d}": b"" for i in range(600)}
    minix_type.make_image(tmp_path / "many.img", cfg, files)

    assert minix_type.read_files(tmp_path / "many.img", cfg, list(files)) == files
    assert minix_type.check(tmp_path / "many.img", cfg).ok


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"block_size": 4096}, "block_size"),
        ({"options": ["nobh"]}, "options"),
        ({"size": 9 * KiB}, "size"),
        ({"size": 9 << 30}, "size"),
        ({"size": 8 * MiB + 512}, "size"),
        ({"files": 0, "file_size": 3 << 30}, "file_size"),
        ({"size": 64 * KiB, "files": 2000, "file_size": 0}, "files"),
        ({"size": 1 * MiB, "files": 2, "file_size": 1 * MiB}, "files"),
    ],
)
def test_validate_names_the_key_it_refuses(minix_type, minix_config, fields, key):
    with pytest.raises(ValueError, match=rf"^{key}: ") as caught:
        minix_type.validate(minix_config(**fields))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "said"), [("a/b", "without '/'"), ("x" * 61, "1 to 60 bytes"), ("", "1 to 60")]
)
def test_a_name_minix_cannot_store_is_one_line(tmp_path, minix_type, minix_config, name, said):
    with pytest.raises(ImageError, match=said):
        minix_type.make_image(tmp_path / "n.img", minix_config(files=1), {name: b"x"})
    assert list(tmp_path.iterdir()) == []


def test_a_missing_program_names_the_debian_package(tmp_path, minix_type, minix_config):
    """hotremove looks in /usr/sbin and /sbin as well as PATH (where Debian keeps mkfs.minix),
    so a missing program is simulated by one that does not exist under that name."""
    assert dict(minix_type.tools) == {"mkfs.minix": "util-linux", "fsck.minix": "util-linux"}

    class Uninstalled(type(minix_type)):
        mkfs_program = "mkfs.minix-not-installed"
        tools: ClassVar = {mkfs_program: "util-linux", "fsck.minix": "util-linux"}

    with pytest.raises(ToolMissing, match=r"apt-get install util-linux\)$") as caught:
        Uninstalled().make_image(tmp_path / "t.img", minix_config(), {})
    assert "mkfs.minix-not-installed" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
