"""Real FAT images through the installed vfat type: made by mkfs.fat and mcopy, mapped by the
plugin's own reader of the on-disk format, read back by mtools, checked by fsck.fat -n."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hotremove.errors import HotremoveError, ImageError, ToolMissing
from hotremove_vfat import ondisk
from hotremove_vfat.fstype import FAT32_MIN_CLUSTERS, fat32_min_size

pytestmark = pytest.mark.skipif(
    any(
        shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin") is None
        for tool in ("mkfs.fat", "fsck.fat", "mcopy")
    ),
    reason="dosfstools or mtools is not installed (apt-get install dosfstools mtools)",
)

#: (block_size, size, options) → the FAT width the image must get
LAYOUTS = [
    (512, 2 << 20, [], 12),  # mkfs.fat's choice by size
    (512, 16 << 20, [], 16),
    (512, 48 << 20, ["fat=32"], 32),  # the root directory is a cluster chain
    (1024, 24 << 20, [], 16),
    (2048, 64 << 20, ["fat=16"], 16),
    (4096, 8 << 20, ["fat=12"], 12),
    (4096, 600 << 20, [], 32),  # sparse: only the files' clusters are written
]


def payload(name: str, size: int) -> bytes:
    """Deterministic, distinct bytes per file (a misplaced block shows up as wrong bytes)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def file_set(block_size: int) -> dict[str, bytes]:
    sizes = [0, 1, block_size - 1, block_size, block_size + 1, 4096, 3 * 4096 + 5, 70_000]
    return {f"f{i:05d}": payload(f"f{i:05d}", sizes[i % len(sizes)]) for i in range(24)}


def mapped_bytes(image: Path, block_size: int, blocks: tuple[int, ...], size: int) -> bytes:
    """The file as its map says: the image's bytes at each mapped block, in order."""
    with open(image, "rb") as handle:
        parts = []
        for block in blocks:
            handle.seek(block * block_size)
            parts.append(handle.read(block_size))
    return b"".join(parts)[:size]


@pytest.mark.parametrize(
    ("block_size", "size", "options", "width"),
    LAYOUTS,
    ids=[f"{b}B-{s >> 20}MiB-{'-'.join(o) or 'auto'}" for b, s, o, _ in LAYOUTS],
)
def test_round_trip(vfat, fat_config, tmp_path, block_size, size, options, width):
    files = file_set(block_size)
    cfg = fat_config(
        block_size=block_size, size=size, options=options, files=len(files), file_size=70_000
    )
    vfat.validate(cfg)
    image = tmp_path / "fat.img"

    vfat.make_image(image, cfg, files)

    assert image.stat().st_size == size
    assert ondisk.read_geometry(image).fat_bits == width
    maps = vfat.map_files(image, cfg, list(files))
    seen: set[int] = set()
    for path, data in files.items():
        fmap = maps[path]
        assert fmap.size == len(data)
        assert len(fmap.blocks) == -(-len(data) // block_size)
        assert mapped_bytes(image, block_size, fmap.blocks, fmap.size) == data, path
        assert not seen & set(fmap.blocks), f"{path} shares blocks with another file"
        seen |= set(fmap.blocks)
        assert all(0 < b < size // block_size for b in fmap.blocks)
    assert vfat.read_files(image, cfg, list(files)) == files
    verdict = vfat.check(image, cfg)
    assert verdict.ok, verdict.summary
    assert verdict.summary.startswith(f"{sum(1 for _ in files)} files")


def test_equal_inputs_give_identical_images(vfat, fat_config, tmp_path, monkeypatch):
    """--invariant, a fixed serial and fixed file times: the bytes do not depend on the host's
    clock or time zone (mtools stamps local time; the plugin pins UTC)."""
    files = file_set(512)
    cfg = fat_config(size=16 << 20, files=len(files), file_size=70_000)
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    vfat.make_image(first, cfg, files)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    vfat.make_image(second, cfg, files)

    assert first.read_bytes() == second.read_bytes()
    assert root_entry_date(first) == (2004, 7, 15)


def root_entry_date(image: Path) -> tuple[int, int, int]:
    """The modification date of the root's first entry (FAT dates count years from 1980)."""
    geo = ondisk.read_geometry(image)
    with open(image, "rb") as handle:
        handle.seek(geo.root_start * geo.sector_size)
        entry = handle.read(32)
    date = int.from_bytes(entry[24:26], "little")
    return (1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F)


def test_a_flipped_data_byte_is_read_back(vfat, fat_config, tmp_path):
    """fsck.fat does not checksum data: the reader is what notices a wrong data byte."""
    files = file_set(512)
    cfg = fat_config(files=len(files), file_size=70_000)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, files)
    victim = "f00007"  # 70,000 bytes
    block = vfat.map_files(image, cfg, [victim])[victim].blocks[5]
    with open(image, "r+b") as handle:
        handle.seek(block * 512 + 100)
        byte = handle.read(1)[0]
        handle.seek(block * 512 + 100)
        handle.write(bytes([byte ^ 0x01]))

    back = vfat.read_files(image, cfg, list(files))

    assert [p for p in files if back[p] != files[p]] == [victim]
    assert vfat.check(image, cfg).ok


def test_a_broken_cluster_chain_is_noticed(vfat, fat_config, tmp_path):
    """A FAT entry zeroed in the middle of a file's chain (in both FATs): fsck.fat names the
    file, and the plugin's reader refuses to map it."""
    files = file_set(512)
    cfg = fat_config(files=len(files), file_size=70_000)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, files)
    geo = ondisk.read_geometry(image)
    assert geo.fat_bits == 12
    fat = ondisk.read_fat(image, geo).tolist()
    entry = ondisk.by_name(ondisk.read_root(image, geo, fat))["f00007"]
    cluster = ondisk.cluster_chain(fat, geo, entry.start, "f00007")[3]
    raw = bytearray(image.read_bytes())
    for copy in range(geo.fats):  # FAT12: entry n in the 12 bits at byte n * 1.5
        offset = (geo.reserved + copy * geo.fat_length) * geo.sector_size + cluster * 3 // 2
        pair = (raw[offset] | raw[offset + 1] << 8) & (0x000F if cluster & 1 else 0xF000)
        raw[offset], raw[offset + 1] = pair & 0xFF, pair >> 8
    image.write_bytes(bytes(raw))

    verdict = vfat.check(image, cfg)

    assert not verdict.ok
    assert verdict.summary == f"/F00007: Contains a free cluster ({cluster}). Assuming EOF."
    with pytest.raises(ImageError, match="f00007: the chain runs into a free cluster"):
        vfat.map_files(image, cfg, ["f00007"])


def test_a_wrong_size_in_the_directory_is_noticed(vfat, fat_config, tmp_path):
    files = file_set(512)
    cfg = fat_config(files=len(files), file_size=70_000)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, files)
    geo = ondisk.read_geometry(image)
    with open(image, "r+b") as handle:  # f00001 (1 byte) claims 100,000 bytes
        handle.seek(geo.root_start * geo.sector_size + 32 + 28)
        handle.write((100_000).to_bytes(4, "little"))

    verdict = vfat.check(image, cfg)

    assert not verdict.ok and verdict.summary.startswith("/F00001: File size is 100000 bytes")
    with pytest.raises(ImageError, match="f00001: 100000 bytes need"):
        vfat.map_files(image, cfg, ["f00001"])


@pytest.mark.parametrize("block_size", [512, 4096])
def test_a_root_directory_for_many_files_is_whole_sectors(vfat, fat_config, tmp_path, block_size):
    """More files than mkfs.fat's default 512 root entries: the plugin asks for whole sectors
    of entries (mkfs.fat keeps ``-r 1000`` as is; Linux refuses a root directory that ends
    inside a sector: "bogus number of directory entries")."""
    files = {f"f{i:05d}": payload(str(i), 100) for i in range(1000)}
    cfg = fat_config(block_size=block_size, size=16 << 20, files=1000, file_size=100)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, files)

    geo = ondisk.read_geometry(image)

    assert geo.fat_bits != 32 and geo.root_entries >= 1000  # a fixed root directory
    assert geo.root_entries * ondisk.DIR_ENTRY % block_size == 0
    assert vfat.read_files(image, cfg, list(files)) == files
    assert vfat.check(image, cfg).ok


def test_files_that_do_not_fit_are_one_line_image_errors(vfat, fat_config, tmp_path):
    """600 files of 513 bytes pass validate (2 sectors each fit in 1 MiB) but need 600
    clusters of 2 KiB: the build stops with one line and leaves nothing behind."""
    files = {f"f{i:05d}": payload(str(i), 513) for i in range(600)}
    cfg = fat_config(size=1 << 20, files=600, file_size=513)
    vfat.validate(cfg)
    image = tmp_path / "fat.img"

    with pytest.raises(ImageError) as caught:
        vfat.make_image(image, cfg, files)

    message = str(caught.value)
    assert "\n" not in message and message.startswith("files: 600 files do not fit")
    assert "clusters of 2048 bytes" in message
    assert list(tmp_path.iterdir()) == []


def test_a_width_mkfs_fat_cannot_make_is_a_one_line_image_error(vfat, fat_config, tmp_path):
    cfg = fat_config(size=1 << 20, options=["fat=16"])
    vfat.validate(cfg)
    with pytest.raises(ImageError) as caught:
        vfat.make_image(tmp_path / "fat.img", cfg, {"f00000": b"x"})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("mkfs.fat could not make")
    assert "(fat=16): mkfs.fat: Attempting to create a too small" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({"block_size": 8192}, "block_size", "512, 1024, 2048, 4096"),
        ({"block_size": 256}, "block_size", "512, 1024, 2048, 4096"),
        ({"size": 512 << 10}, "size", "between 1MiB and 8GiB"),
        ({"size": 9 << 30}, "size", "between 1MiB and 8GiB"),
        ({"options": ["shortname=lower"]}, "options", "no option 'shortname=lower'"),
        ({"options": ["fat=8"]}, "options", "no option 'fat=8'"),
        ({"options": ["fat=12", "fat=16"]}, "options", "at most one fat="),
        ({"options": ["fat=32"], "size": 32 << 20}, "options", "fat=32 needs an image of"),
        ({"files": 65_521, "file_size": 0, "size": 64 << 20}, "files", "at most 65520"),
        ({"files": 100, "file_size": 64 << 10}, "files", "do not fit"),
        ({"files": 4000, "file_size": 513, "size": 4 << 20}, "files", "2 512-byte sectors"),
    ],
)
def test_each_refusal_names_its_key(vfat, fat_config, fields, key, words):
    with pytest.raises(ValueError) as caught:
        vfat.validate(fat_config(**fields))
    assert str(caught.value).startswith(f"{key}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize("block_size", [512, 1024, 2048, 4096])
def test_fat32_is_refused_exactly_where_mkfs_fat_would_warn(vfat, fat_config, tmp_path, block_size):
    """The validate bound is mkfs.fat's: at it the image is made quietly and checks clean; one
    sector less, validate refuses — and mkfs.fat itself would warn of too few clusters."""
    smallest = fat32_min_size(block_size)
    cfg = fat_config(block_size=block_size, size=smallest, options=["fat=32"], files=1)
    vfat.validate(cfg)
    with pytest.raises(ValueError, match=r"^options: fat=32 needs an image of at least"):
        vfat.validate(
            fat_config(block_size=block_size, size=smallest - block_size, options=["fat=32"])
        )
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, {"f00000": b"at the edge"})
    assert ondisk.read_geometry(image).clusters == FAT32_MIN_CLUSTERS
    verdict = vfat.check(image, cfg)
    assert verdict.ok, verdict.summary
    below = tmp_path / "below.img"
    below.write_bytes(b"")
    os.truncate(below, smallest - block_size)
    mkfs = vfat.require_tools()["mkfs.fat"]
    argv = [mkfs, "--invariant", "-F", "32", "-S", str(block_size), str(below)]
    warned = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "less then suggested minimum" in warned.stdout + warned.stderr


def test_long_and_mixed_case_names_are_found(vfat, fat_config, tmp_path):
    """Names that need VFAT long-name entries (mcopy writes them) and lookups in another case,
    as the Linux driver looks names up."""
    files = {"A Long Name.data": payload("long", 5000), "f00001": payload("short", 700)}
    cfg = fat_config(files=2, file_size=5000)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, files)

    maps = vfat.map_files(image, cfg, ["a long name.DATA", "F00001"])

    assert (
        mapped_bytes(image, 512, maps["a long name.DATA"].blocks, 5000) == files["A Long Name.data"]
    )
    assert mapped_bytes(image, 512, maps["F00001"].blocks, 700) == files["f00001"]
    assert vfat.read_files(image, cfg, list(files)) == files


def test_names_that_differ_only_in_case_are_refused(vfat, fat_config, tmp_path):
    with pytest.raises(ImageError, match="'f00001' and 'F00001' differ only in case"):
        vfat.make_image(tmp_path / "fat.img", fat_config(), {"f00001": b"a", "F00001": b"b"})
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_is_an_image_error(vfat, fat_config, tmp_path):
    cfg = fat_config(files=1)
    image = tmp_path / "fat.img"
    vfat.make_image(image, cfg, {"f00000": b"one"})
    with pytest.raises(ImageError, match="no file 'f00042' in the root directory"):
        vfat.map_files(image, cfg, ["f00042"])
    with pytest.raises(ImageError, match="f00042"):
        vfat.read_files(image, cfg, ["f00042"])


def test_a_missing_tool_names_its_debian_package(vfat, fat_config, tmp_path, monkeypatch):
    """mcopy (in /usr/bin) disappears with PATH; mkfs.fat and fsck.fat are also looked for in
    /sbin and /usr/sbin, as users' PATH often lacks them."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as caught:
        vfat.make_image(tmp_path / "fat.img", fat_config(), {"f00000": b"x"})
    assert isinstance(caught.value, HotremoveError)
    assert str(caught.value) == "vfat: mcopy not found (apt-get install mtools)"
    assert not (tmp_path / "fat.img").exists()


def test_guest_modules_cover_debians_fat_defaults(vfat, fat_config):
    """The modules the guest loads are what the cached Debian kernels' configs need: vfat
    (with fat, from modules.dep) and the nls tables of the default codepage and iocharset,
    which load_nls() would request at mount time."""
    from hotremove.kernels import KERNELS
    from hotremove.realkernel.fetch import kernel_cache_root

    configs = sorted(kernel_cache_root().glob("*/config"))
    if not configs:
        pytest.skip(f"no cached Debian kernel in {kernel_cache_root()} (hotremove kernel fetch)")
    for path in configs:
        config = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        kernel = KERNELS.get(path.parent.name, KERNELS["6.12"])
        mount = vfat.guest(fat_config(options=["fat=32"]), kernel)
        assert (mount.fstype, mount.options) == ("vfat", ()), "fat= is mkfs.fat's, not mount's"
        assert config["CONFIG_VFAT_FS"] in ("m", "y"), path
        codepage = config["CONFIG_FAT_DEFAULT_CODEPAGE"]
        iocharset = config["CONFIG_FAT_DEFAULT_IOCHARSET"].strip('"')
        assert {"vfat", f"nls_cp{codepage}", f"nls_{iocharset}"} <= set(mount.modules), path
        assert config[f"CONFIG_NLS_CODEPAGE_{codepage}"] in ("m", "y"), path
        assert config[f"CONFIG_NLS_{iocharset.upper()}"] in ("m", "y"), path
