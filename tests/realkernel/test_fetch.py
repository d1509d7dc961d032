"""Fetching a kernel: the cache layout, idempotence, and no half-written entry on failure."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from hotremove.errors import HotremoveError
from hotremove.realkernel.fetch import fetch_kernel
from hotremove.realkernel.modules import WANTED_MODULES, filesystem_modules

pytestmark = pytest.mark.realkernel


def _members(initramfs: Path) -> dict[str, bytes]:
    """name → data of a newc archive (enough of a reader for the test)."""
    data = gzip.decompress(initramfs.read_bytes())
    out: dict[str, bytes] = {}
    pos = 0
    while True:
        header = data[pos : pos + 110]
        namesize, filesize = int(header[94:102], 16), int(header[54:62], 16)
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = data[pos : pos + filesize]
        pos += filesize
        pos += -pos % 4


#: version → (the packages downloaded, the release's prefix): 6.1 is one linux-image package
#: with boot/ and lib/modules/; Debian's 7.x splits it into merged-/usr parts
LAYOUTS = {
    "6.1": (("linux-image-6.1.0-",), "6.1.0-"),
    "7.2": (("linux-base-7.2.", "linux-binary-7.2.", "linux-modules-7.2."), "7.2."),
}


@pytest.mark.parametrize("version", sorted(LAYOUTS))
def test_fetch_lays_out_the_cache_and_a_second_call_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    messages: list[str] = []
    bundle = fetch_kernel(version, cache=tmp_path, progress=messages.append)
    packages, release = LAYOUTS[version]
    downloading = next(m for m in messages if m.startswith("downloading "))
    assert len(downloading.split()) == 1 + len(packages), downloading
    assert all(p in downloading for p in packages), downloading
    assert os.listdir(tmp_path) == [version]  # nothing else: no temp directory, no .deb
    entry = tmp_path / version
    assert sorted(os.listdir(entry)) == ["bundle.json", "config", "initramfs.cpio.gz", "vmlinuz"]
    assert bundle.release.startswith(release) and bundle.release.endswith("-amd64")
    assert bundle.vmlinuz == entry / "vmlinuz" and bundle.initramfs == entry / "initramfs.cpio.gz"
    assert "CONFIG_MEMORY_HOTREMOVE=y" in (entry / "config").read_text()
    members = _members(bundle.initramfs)
    assert members["init"].startswith(b"#!/bin/busybox sh")
    assert members["bin/busybox"][:4] == b"\x7fELF"
    order = members["lib/modules/load-order"].decode().split()
    assert order.index("jbd2.ko") < order.index("ext4.ko")
    assert "virtio_blk.ko" in order
    # every installed filesystem type's guest modules (the ext types' ext4; vfat, xfs, btrfs
    # when their plugins are installed), each loaded after its dependencies
    for name in filesystem_modules():
        if name not in WANTED_MODULES:  # crc32c's providers: best effort (7.2 has none)
            assert f"{name}.ko" in order, name
    for name in order:  # decompressed: busybox insmod cannot read .ko.xz
        assert members[f"lib/modules/{name}"][:4] == b"\x7fELF"
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}

    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no apt-get, no dpkg: a download would fail
    again = fetch_kernel(version, cache=tmp_path, progress=messages.append)
    assert again == bundle
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes
    if version != "6.1":
        return
    # an entry built before a plugin was installed lacks its modules: fetched again, by itself
    monkeypatch.undo()
    meta = json.loads((entry / "bundle.json").read_text())
    meta["wanted"] = [m for m in meta["wanted"] if m not in ("vfat", "xfs")]
    (entry / "bundle.json").write_text(json.dumps(meta))
    messages.clear()
    rebuilt = fetch_kernel(version, cache=tmp_path, progress=messages.append)
    assert messages[0].endswith("lacks vfat, xfs: fetching 6.1 again"), messages
    assert {"vfat.ko", "fat.ko", "xfs.ko"} <= set(rebuilt.modules)
    assert sorted(os.listdir(tmp_path)) == [version, "no-tools"]  # the old entry is gone


def test_a_damaged_package_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which("dpkg")
    assert real is not None
    fake = tmp_path / "bin"
    fake.mkdir()
    dpkg = fake / "dpkg"
    # the download succeeds, then unpacking fails half-way through (a damaged .deb)
    dpkg.write_text('#!/bin/sh\nmkdir -p "$3/boot" && echo partial > "$3/boot/x"\nexit 2\n')
    dpkg.chmod(dpkg.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    cache = tmp_path / "cache"
    with pytest.raises(HotremoveError) as exc:
        fetch_kernel("6.12", cache=cache)
    assert "dpkg -x failed" in str(exc.value) and "\n" not in str(exc.value)
    assert os.listdir(cache) == []  # neither "6.12" nor a temporary directory
