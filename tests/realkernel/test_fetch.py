"""Fetching a kernel: the cache layout, idempotence, and no half-written entry on failure."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from hotremove.errors import HotremoveError
from hotremove.realkernel.fetch import fetch_kernel

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


def test_fetch_lays_out_the_cache_and_a_second_call_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages: list[str] = []
    bundle = fetch_kernel("6.1", cache=tmp_path, progress=messages.append)
    assert any(m.startswith("downloading linux-image-6.1.0-") for m in messages)
    assert os.listdir(tmp_path) == ["6.1"]  # nothing else: no temp directory, no .deb
    entry = tmp_path / "6.1"
    assert sorted(os.listdir(entry)) == ["bundle.json", "config", "initramfs.cpio.gz", "vmlinuz"]
    assert bundle.release.startswith("6.1.0-") and bundle.release.endswith("-amd64")
    assert bundle.vmlinuz == entry / "vmlinuz" and bundle.initramfs == entry / "initramfs.cpio.gz"
    members = _members(bundle.initramfs)
    assert members["init"].startswith(b"#!/bin/busybox sh")
    assert members["bin/busybox"][:4] == b"\x7fELF"
    order = members["lib/modules/load-order"].decode().split()
    assert order[-1] == "ext4.ko" and order.index("jbd2.ko") < order.index("ext4.ko")
    assert "virtio_blk.ko" in order and "crc32c_generic.ko" in order
    for name in order:  # decompressed: busybox insmod cannot read .ko.xz
        assert members[f"lib/modules/{name}"][:4] == b"\x7fELF"
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}

    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no apt-get, no dpkg: a download would fail
    again = fetch_kernel("6.1", cache=tmp_path, progress=messages.append)
    assert again == bundle
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes


def test_a_failed_fetch_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    apt_get = fake / "apt-get"
    # apt-get download "succeeds" with a damaged package: dpkg -x fails half-way through
    apt_get.write_text('#!/bin/sh\necho "not a deb" > "${4}_1.0_amd64.deb"\n')
    apt_get.chmod(apt_get.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    cache = tmp_path / "cache"
    with pytest.raises(HotremoveError) as exc:
        fetch_kernel("6.12", cache=cache)
    assert "dpkg -x failed" in str(exc.value) and "\n" not in str(exc.value)
    assert os.listdir(cache) == []  # neither "6.12" nor a temporary directory
