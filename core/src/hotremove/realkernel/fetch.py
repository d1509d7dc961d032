"""Fetch a Debian kernel and build the generic busybox initramfs that boots it.

The kernel package is downloaded with ``apt-get download`` and unpacked with ``dpkg -x`` into
a temporary directory beside the cache entry — never installed on the host. Only what a
guest needs is kept: ``vmlinuz``, the kernel config, and an initramfs holding a static
busybox, the modules for virtio-blk and ext4 (which also serves ext2 and ext3) with their
dependencies from ``modules.dep`` (decompressed: busybox ``insmod`` cannot read ``.ko.xz``),
and the generic ``/init`` of :mod:`hotremove.realkernel.guest`. The entry is renamed into place
only once complete, so an interrupted fetch never leaves a half-written cache entry.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel import cpio, guest

#: Kernel versions the harness knows how to fetch, and how each package name looks.
KNOWN_VERSIONS: dict[str, re.Pattern[str]] = {
    "6.1": re.compile(r"^linux-image-6\.1\.0-(\d+)-amd64(-unsigned)?$"),
    "6.12": re.compile(r"^linux-image-6\.12\.(\d+)\+deb(\d+)-amd64(-unsigned)?$"),
}

#: Modules the guest needs, loaded in this order after their dependencies. crc32c is a
#: soft dependency of ext4/jbd2 (crypto API lookup), so modules.dep does not name it.
WANTED_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "crc32c_intel", "crc16", "ext4")

#: Kernel options the experiment relies on; a kernel without them cannot mirror a scenario.
REQUIRED_CONFIG = (
    "CONFIG_MEMORY_HOTPLUG",
    "CONFIG_MEMORY_HOTREMOVE",
    "CONFIG_MIGRATION",
    "CONFIG_PROC_PAGE_MONITOR",
    "CONFIG_EXT4_USE_FOR_EXT2",
)

#: Bump when the layout of a cache entry or the generic initramfs changes.
BUNDLE_FORMAT = 1

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KernelBundle:
    """A fetched kernel, ready to boot: what the guest runs, and where it came from."""

    version: str  #: "6.1" or "6.12"
    release: str  #: ``uname -r`` in the guest, e.g. ``6.1.0-57-amd64``
    package: str  #: the Debian package it was unpacked from
    package_version: str
    vmlinuz: Path
    initramfs: Path
    directory: Path
    modules: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "release": self.release,
            "package": self.package,
            "package_version": self.package_version,
            "vmlinuz": str(self.vmlinuz),
            "initramfs": str(self.initramfs),
            "modules": list(self.modules),
        }


def kernel_cache_root() -> Path:
    """``$HOTREMOVE_KERNEL_CACHE``, else ``$HOTREMOVE_CACHE/kernels``, else
    ``$XDG_CACHE_HOME/hotremove/kernels`` (``~/.cache`` when XDG is unset)."""
    explicit = os.environ.get("HOTREMOVE_KERNEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("HOTREMOVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hotremove"
    )
    return Path(base) / "kernels"


def check_version(version: str) -> str:
    if version not in KNOWN_VERSIONS:
        raise HotremoveError(
            f"unknown kernel version {version!r} (known: {', '.join(KNOWN_VERSIONS)})"
        )
    return version


def require_tools(*names: str) -> dict[str, str]:
    """Absolute paths of host programs, or one line saying what to install."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = shutil.which(name) or next(
            (
                os.path.join(d, name)
                for d in ("/usr/sbin", "/sbin")
                if os.access(os.path.join(d, name), os.X_OK)
            ),
            None,
        )
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        packages = sorted({_PACKAGE_OF.get(name, name) for name in missing})
        raise HotremoveError(
            f"{', '.join(missing)} not found: apt-get install {' '.join(packages)}"
        )
    return found


_PACKAGE_OF = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg": "dpkg",
    "depmod": "kmod",
    "zstd": "zstd",
}


def static_busybox() -> Path:
    """The host's busybox, which must be statically linked: the guest has no libc."""
    path = Path(require_tools("busybox")["busybox"]).resolve()
    if _elf_interpreter(path.read_bytes()):
        raise HotremoveError(
            f"{path} is dynamically linked: apt-get install busybox-static "
            "(the guest has no shared libraries)"
        )
    return path


def _elf_interpreter(data: bytes) -> bool:
    """True when an ELF64 little-endian file has a PT_INTERP segment (dynamic linking)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise HotremoveError("busybox is not a 64-bit ELF program: apt-get install busybox-static")
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off : off + 4], "little") == 3:  # PT_INTERP
            return True
    return False


def resolve_package(version: str) -> str:
    """The newest package for ``version`` in the host's apt lists, preferring ``-unsigned``
    (the same image without the Secure Boot signature, which QEMU's direct boot ignores)."""
    check_version(version)
    tools = require_tools("apt-cache")
    pattern = KNOWN_VERSIONS[version]
    prefix = "linux-image-6.1.0-" if version == "6.1" else "linux-image-6.12."
    out = _run([tools["apt-cache"], "pkgnames", prefix], what="apt-cache pkgnames").stdout
    best: tuple[tuple[int, ...], str] | None = None
    for name in out.split():
        m = pattern.match(name)
        if m is None:
            continue
        key = (*(int(g) for g in m.groups()[:-1]), 1 if m.groups()[-1] else 0)
        if best is None or key > best[0]:
            best = (key, name)
    if best is None:
        raise HotremoveError(
            f"no Debian package for Linux {version} in the apt lists "
            "(run apt-get update; the lists must include bookworm and bookworm-updates)"
        )
    return best[1]


def fetch_kernel(
    version: str, cache: Path | None = None, progress: Progress | None = None
) -> KernelBundle:
    """The cached bundle for ``version``, downloading and building it on first use."""
    check_version(version)
    say = progress or (lambda _msg: None)
    root = cache if cache is not None else kernel_cache_root()
    entry = root / version
    bundle = load_bundle(entry)
    if bundle is not None:
        return bundle
    tools = require_tools("apt-get", "apt-cache", "dpkg", "depmod", "qemu-system-x86_64")
    busybox = static_busybox()
    package = resolve_package(version)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=root))
    try:
        say(f"downloading {package}")
        _run([tools["apt-get"], "download", "-q", package], what="apt-get download", cwd=tmp)
        debs = sorted(tmp.glob("*.deb"))
        if len(debs) != 1:
            raise HotremoveError(f"apt-get download {package} left {len(debs)} .deb files")
        package_version = debs[0].name.split("_")[1]
        say(f"unpacking {debs[0].name}")
        tree = tmp / "tree"
        _run([tools["dpkg"], "-x", str(debs[0]), str(tree)], what="dpkg -x")
        debs[0].unlink()
        releases = sorted(p.name for p in (tree / "lib/modules").iterdir())
        if len(releases) != 1:
            raise HotremoveError(f"{package}: expected one module tree, found {releases}")
        release = releases[0]
        config = (tree / "boot" / f"config-{release}").read_text()
        _check_config(package, config)
        _run([tools["depmod"], "-b", str(tree), release], what="depmod")
        say("building the initramfs")
        modules = _module_files(tree / "lib/modules" / release)
        entries = _initramfs_entries(busybox, modules)
        shutil.copyfile(tree / "boot" / f"vmlinuz-{release}", tmp / "vmlinuz")
        (tmp / "config").write_text(config)
        cpio.write_gzip(tmp / "initramfs.cpio.gz", entries)
        shutil.rmtree(tree)
        meta = {
            "format": BUNDLE_FORMAT,
            "version": version,
            "release": release,
            "package": package,
            "package_version": package_version,
            "modules": [name for name, _ in modules],
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp made it private; the entry is an ordinary cache directory
        try:
            os.replace(tmp, entry)  # atomic; fails if another fetch finished first
        except OSError:
            if load_bundle(entry) is None:
                shutil.rmtree(entry, ignore_errors=True)  # a stale or foreign entry
                os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle = load_bundle(entry)
    if bundle is None:  # pragma: no cover - only if the entry vanished under us
        raise HotremoveError(f"kernel cache entry {entry} is incomplete after fetching")
    say(f"kernel {bundle.release} ready in {entry}")
    return bundle


def load_bundle(entry: Path) -> KernelBundle | None:
    """The bundle in a complete cache entry, or None (absent, older format, or damaged)."""
    try:
        meta = json.loads((entry / "bundle.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != BUNDLE_FORMAT:
        return None
    vmlinuz, initramfs = entry / "vmlinuz", entry / "initramfs.cpio.gz"
    if not (vmlinuz.is_file() and initramfs.is_file()):
        return None
    return KernelBundle(
        version=meta["version"],
        release=meta["release"],
        package=meta["package"],
        package_version=meta["package_version"],
        vmlinuz=vmlinuz,
        initramfs=initramfs,
        directory=entry,
        modules=tuple(meta.get("modules", ())),
    )


def _check_config(package: str, config: str) -> None:
    missing = [opt for opt in REQUIRED_CONFIG if f"\n{opt}=y" not in f"\n{config}"]
    if missing:
        raise HotremoveError(f"{package} lacks {', '.join(missing)}: it cannot run the harness")


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


def _module_files(moddir: Path) -> list[tuple[str, bytes]]:
    """(file name, decompressed bytes) of every module to load, in load order."""
    deps = parse_modules_dep((moddir / "modules.dep").read_text())
    out: list[tuple[str, bytes]] = []
    for rel in load_order(deps, WANTED_MODULES):
        raw = (moddir / rel).read_bytes()
        if rel.endswith(".xz"):
            raw = lzma.decompress(raw)
        elif rel.endswith(".zst"):
            zstd = require_tools("zstd")["zstd"]
            raw = subprocess.run([zstd, "-dc"], input=raw, capture_output=True, check=True).stdout
        elif rel.endswith(".gz"):
            import gzip

            raw = gzip.decompress(raw)
        out.append((module_name(rel) + ".ko", raw))
    if not any(name == "ext4.ko" for name, _ in out) and "ext4" not in _builtin(moddir):
        raise HotremoveError(f"no ext4 module in {moddir.name}")
    return out


def _builtin(moddir: Path) -> set[str]:
    try:
        return {module_name(p) for p in (moddir / "modules.builtin").read_text().split()}
    except OSError:
        return set()


def _initramfs_entries(busybox: Path, modules: list[tuple[str, bytes]]) -> list[cpio.Entry]:
    entries = [cpio.directory(d) for d in guest.ROOT_DIRS]
    entries.append(cpio.regular("bin/busybox", busybox.read_bytes(), executable=True))
    entries.append(cpio.symlink("bin/sh", "busybox"))
    entries.append(cpio.regular("init", guest.INIT.encode(), executable=True))
    for name, data in modules:
        entries.append(cpio.regular(f"lib/modules/{name}", data))
    order = "".join(f"{name}\n" for name, _ in modules)
    entries.append(cpio.regular("lib/modules/load-order", order.encode()))
    return entries


def _run(
    argv: list[str], *, what: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise HotremoveError(f"{what} failed: {reason}")
    return result
