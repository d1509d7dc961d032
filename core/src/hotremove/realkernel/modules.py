"""The guest's kernel modules: which ones, in which order, decompressed for busybox ``insmod``.

:data:`WANTED_MODULES` is the one list of what the initramfs loads (virtio-blk and ext4, which
also serves ext2 and ext3 images); :func:`module_files` is its one use. Each is loaded after
its dependencies from ``modules.dep``; a name that is built in (or absent) is skipped.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel.tools import require_tools

#: Modules the guest needs, loaded in this order after their dependencies. crc32c is a soft
#: dependency of ext4/jbd2 (a crypto API lookup) up to 6.x, so modules.dep does not name it;
#: from 6.14 ext4 calls the crc32c library and modules.dep names it (then: crc32c-cryptoapi).
WANTED_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "crc32c_intel", "crc16", "ext4")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep`` → {relative path: [dependency paths]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            path, rest = line.split(":", 1)
            deps[path.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    """``kernel/fs/ext4/ext4.ko.xz`` → ``ext4`` (``-`` and ``_`` are the same to modprobe)."""
    base = path.rsplit("/", 1)[-1]
    for ext in (".xz", ".zst", ".gz"):
        base = base.removesuffix(ext)
    return base.removesuffix(".ko").replace("-", "_")


def load_order(deps: dict[str, list[str]], wanted: tuple[str, ...]) -> list[str]:
    """Module paths to load, each after its dependencies (depth first), for the ``wanted``
    names that exist as modules (the others are built in, or absent on this kernel)."""
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is not None:
            visit(path)
    return order


def decompress(rel: str, raw: bytes) -> bytes:
    """A module file's ELF bytes (busybox ``insmod`` cannot read ``.ko.xz``/``.zst``/``.gz``)."""
    if rel.endswith(".xz"):
        return lzma.decompress(raw)
    if rel.endswith(".gz"):
        return gzip.decompress(raw)
    if rel.endswith(".zst"):
        zstd = require_tools("zstd")["zstd"]
        return subprocess.run([zstd, "-dc"], input=raw, capture_output=True, check=True).stdout
    return raw


def module_files(moddir: Path, wanted: tuple[str, ...] = WANTED_MODULES) -> list[tuple[str, bytes]]:
    """(file name, decompressed bytes) of every module to load, in load order."""
    deps = parse_modules_dep((moddir / "modules.dep").read_text())
    out = [
        (module_name(rel) + ".ko", decompress(rel, (moddir / rel).read_bytes()))
        for rel in load_order(deps, wanted)
    ]
    if not any(name == "ext4.ko" for name, _ in out) and "ext4" not in builtin(moddir):
        raise HotremoveError(f"no ext4 module in {moddir.name}")
    return out


def builtin(moddir: Path) -> set[str]:
    """Names of the modules built into the kernel (``modules.builtin``)."""
    try:
        return {module_name(p) for p in (moddir / "modules.builtin").read_text().split()}
    except OSError:
        return set()


__all__ = [
    "WANTED_MODULES",
    "builtin",
    "decompress",
    "load_order",
    "module_files",
    "module_name",
    "parse_modules_dep",
]
