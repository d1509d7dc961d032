"""Fetch a Debian kernel and build the generic busybox initramfs that boots it.

The kernel's packages are downloaded through an apt configuration private to the fetch
(:mod:`hotremove.realkernel.apt`: never the host's sources, no host ``apt-get update``) and
unpacked with ``dpkg -x`` into a temporary directory beside the cache entry — never installed
on the host. Both layouts are handled: one ``linux-image`` package with ``boot/vmlinuz-REL``
and ``lib/modules/REL`` (5.10–6.12), and Debian 7.x's split, merged-/usr packages
(``usr/lib/modules/REL/vmlinuz``, the modules, and ``config`` in ``linux-base-REL``). Only
what a guest needs is kept: ``vmlinuz``, the kernel config, and an initramfs holding a static
busybox, the modules of :mod:`hotremove.realkernel.modules` and the generic ``/init`` of
:mod:`hotremove.realkernel.guest`. The entry is renamed into place only once complete, so a
failed or interrupted fetch never leaves a half-written cache entry. An entry whose
initramfs was built for fewer modules than the installed filesystem types now ask for (a
plugin installed since: vfat, xfs, btrfs …) is fetched again and replaced, by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel import cpio, guest
from hotremove.realkernel.apt import (
    SUITES,
    ArchiveError,
    PrivateApt,
    newest_image,
    packages_to_download,
    sources_for,
)
from hotremove.realkernel.modules import (
    load_order,
    module_files,
    module_name,
    parse_modules_dep,
    wanted_modules,
)
from hotremove.realkernel.tools import require_tools, static_busybox

#: Kernel versions the harness knows how to fetch (the suites that hold them: apt.SUITES).
KNOWN_VERSIONS: tuple[str, ...] = tuple(SUITES)

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

    version: str  #: "5.10", "6.1", "6.12" or "7.2"
    release: str  #: ``uname -r`` in the guest, e.g. ``6.1.0-57-amd64``
    package: str  #: the Debian package it was unpacked from (or, split, whose parts)
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


def fetch_kernel(
    version: str, cache: Path | None = None, progress: Progress | None = None
) -> KernelBundle:
    """The cached bundle for ``version``, downloading and building it on first use."""
    check_version(version)
    say = progress or (lambda _msg: None)
    root = cache if cache is not None else kernel_cache_root()
    entry = root / version
    bundle = load_bundle(entry)
    wanted = wanted_modules()
    lacking = missing_modules(entry, wanted) if bundle is not None else ()
    if bundle is not None and not lacking:
        return bundle
    if lacking:
        say(f"the initramfs in {entry} lacks {', '.join(lacking)}: fetching {version} again")
    tools = require_tools("apt-get", "apt-cache", "dpkg", "depmod", "qemu-system-x86_64")
    busybox = static_busybox()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=root))
    try:
        apt = PrivateApt(tmp / "apt", sources_for(version))
        say(f"reading the package lists of {apt.where}")
        apt.update()
        package = newest_image(apt, version)
        parts = packages_to_download(apt, package)
        say(f"downloading {' '.join(parts)}")
        debs = apt.download(parts, tmp)
        if len(debs) != len(parts):
            raise ArchiveError(f"apt-get download {' '.join(parts)} left {len(debs)} .deb files")
        package_version = debs[0].name.split("_")[1]
        tree = tmp / "tree"
        for deb in debs:
            say(f"unpacking {deb.name}")
            _run([tools["dpkg"], "-x", str(deb), str(tree)], what="dpkg -x")
            deb.unlink()
        shutil.rmtree(tmp / "apt")
        release, moddir = _module_tree(package, tree)
        config = _config(package, tree, release, moddir)
        _check_config(package, config)
        _run([tools["depmod"], "-b", str(tree), release], what="depmod")
        say("building the initramfs")
        modules = module_files(moddir, wanted)
        entries = _initramfs_entries(busybox, modules)
        shutil.copyfile(_vmlinuz(package, tree, release, moddir), tmp / "vmlinuz")
        (tmp / "config").write_text(config)
        cpio.write_gzip(tmp / "initramfs.cpio.gz", entries)
        shutil.rmtree(tree)
        meta = {
            "format": BUNDLE_FORMAT,
            "version": version,
            "release": release,
            "package": package,
            "package_version": package_version,
            "packages": parts,
            "modules": [name for name, _ in modules],
            "wanted": list(wanted),
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp made it private; the entry is an ordinary cache directory
        try:
            os.replace(tmp, entry)  # atomic; fails if another fetch finished first
        except OSError:
            if load_bundle(entry) is None or missing_modules(entry, wanted):
                # a stale, foreign or too-small entry: set aside, then replaced in one rename
                stale = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".old", dir=root))
                os.replace(entry, stale / "entry")
                os.replace(tmp, entry)
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle = load_bundle(entry)
    if bundle is None:  # pragma: no cover - only if the entry vanished under us
        raise HotremoveError(f"kernel cache entry {entry} is incomplete after fetching")
    say(f"kernel {bundle.release} ready in {entry}")
    return bundle


def missing_modules(entry: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The ``wanted`` module names the entry's initramfs was not built for (built-in ones
    count as built for; an entry made before bundle.json recorded the list lacks them all)."""
    try:
        meta = json.loads((entry / "bundle.json").read_text())
    except (OSError, ValueError):
        return wanted
    built = {module_name(m) for m in meta.get("wanted", ())}
    return tuple(m for m in wanted if module_name(m) not in built)


def _module_tree(package: str, tree: Path) -> tuple[str, Path]:
    """The release and module directory of an unpacked kernel: ``lib/modules/REL`` or, merged
    /usr, ``usr/lib/modules/REL`` (then ``lib`` is made a link to ``usr/lib``, where
    ``depmod -b`` looks)."""
    merged = not (tree / "lib").exists() and (tree / "usr/lib/modules").is_dir()
    if merged:
        (tree / "lib").symlink_to("usr/lib")
    base = tree / "lib" / "modules"
    releases = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
    if len(releases) != 1:
        raise ArchiveError(f"{package}: expected one module tree, found {releases}")
    return releases[0], base / releases[0]


def _vmlinuz(package: str, tree: Path, release: str, moddir: Path) -> Path:
    for path in (tree / "boot" / f"vmlinuz-{release}", moddir / "vmlinuz"):
        if path.is_file():
            return path
    raise ArchiveError(f"{package}: no kernel image (boot/vmlinuz-{release}, {release}/vmlinuz)")


def _config(package: str, tree: Path, release: str, moddir: Path) -> str:
    """The kernel's config: ``boot/config-REL``, or (7.x) ``usr/lib/modules/REL/config`` from
    linux-base-REL. A kernel without one cannot be checked for :data:`REQUIRED_CONFIG`."""
    for path in (tree / "boot" / f"config-{release}", moddir / "config"):
        if path.is_file():
            return path.read_text()
    raise ArchiveError(f"{package}: no kernel config to check (boot/config-{release}, config)")


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


__all__ = [
    "BUNDLE_FORMAT",
    "KNOWN_VERSIONS",
    "REQUIRED_CONFIG",
    "KernelBundle",
    "check_version",
    "fetch_kernel",
    "kernel_cache_root",
    "load_bundle",
    "load_order",
    "missing_modules",
    "module_name",
    "parse_modules_dep",
    "require_tools",
]
