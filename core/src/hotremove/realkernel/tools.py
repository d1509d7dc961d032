"""The host programs the real-kernel harness runs, found or named in one line to install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hotremove.errors import HotremoveError

#: program → the Debian package that provides it (for the "apt-get install …" hint)
PACKAGE_OF = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg": "dpkg",
    "depmod": "kmod",
    "zstd": "zstd",
}


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
        packages = sorted({PACKAGE_OF.get(name, name) for name in missing})
        raise HotremoveError(
            f"{', '.join(missing)} not found: apt-get install {' '.join(packages)}"
        )
    return found


def static_busybox() -> Path:
    """The host's busybox, which must be statically linked: the guest has no libc."""
    path = Path(require_tools("busybox")["busybox"]).resolve()
    if elf_interpreter(path.read_bytes()):
        raise HotremoveError(
            f"{path} is dynamically linked: apt-get install busybox-static "
            "(the guest has no shared libraries)"
        )
    return path


def elf_interpreter(data: bytes) -> bool:
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


__all__ = ["PACKAGE_OF", "elf_interpreter", "require_tools", "static_busybox"]
