"""The guest's kernel modules: which ones, in which order, decompressed for busybox ``insmod``.

:func:`wanted_modules` is the one list of what the initramfs loads: :data:`WANTED_MODULES`
(virtio-blk, crc32c) and the modules of every installed filesystem type's guest mount
(``GuestMount.modules``: ext4, which also serves ext2 and ext3 images; vfat, xfs, btrfs …);
:func:`module_files` is its one use. Each is loaded after its dependencies from
``modules.dep``; a name that is built in (or absent) is skipped.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel.tools import require_tools

#: Modules every guest needs, loaded in this order after their dependencies, before the
#: filesystems' (:func:`filesystem_modules`). crc32c is a soft dependency of ext4/jbd2 (a
#: crypto API lookup) up to 6.x, so modules.dep does not name it; from 6.14 ext4 calls the
#: crc32c library and modules.dep names it (then: crc32c-cryptoapi).
WANTED_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "crc32c_intel", "crc16")


def filesystem_modules() -> tuple[str, ...]:
    """The modules the installed filesystem types' guest mounts load (``GuestMount.modules``
    of each type's default mount in the newest modelled kernel), in type order, once each."""
    from hotremove.fs.registry import installed_types
    from hotremove.fs.tables import probe_config
    from hotremove.kernels import DEFAULT_KERNEL, get_kernel

    kernel = get_kernel(DEFAULT_KERNEL)
    names: list[str] = []
    for fs_type in installed_types().values():
        try:
            names += fs_type.guest(probe_config(fs_type), kernel).modules
        except Exception:  # a type that cannot say has nothing for the initramfs
            continue
    return tuple(dict.fromkeys(names))


def wanted_modules() -> tuple[str, ...]:
    """:data:`WANTED_MODULES`, then every installed filesystem type's modules."""
    return tuple(dict.fromkeys(WANTED_MODULES + filesystem_modules()))


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


def module_files(moddir: Path, wanted: tuple[str, ...] | None = None) -> list[tuple[str, bytes]]:
    """(file name, decompressed bytes) of every module to load (default:
    :func:`wanted_modules`), in load order. A filesystem's module that is neither there nor
    built in is a one-line error, unless :data:`WANTED_MODULES` lists it too (skipped when
    absent, like the others there)."""
    deps = parse_modules_dep((moddir / "modules.dep").read_text())
    out = [
        (module_name(rel) + ".ko", decompress(rel, (moddir / rel).read_bytes()))
        for rel in load_order(deps, wanted_modules() if wanted is None else wanted)
    ]
    loaded = {name.removesuffix(".ko") for name, _ in out} | builtin(moddir)
    # crc32c's providers are best effort wherever they are named (a filesystem's soft
    # dependency up to 6.x; from 6.14 a library, built in on 7.2, with no such modules)
    optional = {module_name(m) for m in WANTED_MODULES}
    missing = [m for m in filesystem_modules() if module_name(m) not in loaded | optional]
    if missing:
        raise HotremoveError(f"no {', '.join(missing)} module in {moddir.name}")
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
    "filesystem_modules",
    "load_order",
    "module_files",
    "module_name",
    "parse_modules_dep",
    "wanted_modules",
]
