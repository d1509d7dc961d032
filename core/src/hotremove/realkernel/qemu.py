"""Running a guest: the QEMU command line, a wall-clock limit, and the console log.

The machine is the one the reference figures were measured on: boot memory plus one
cold-plugged ``pc-dimm`` the size of the scenario's memory. With
``memhp_default_state=online_movable`` the kernel onlines the DIMM as ZONE_MOVABLE, so its
memory blocks (memory32… above 4 GiB with 128 MiB blocks) hold only movable allocations —
the page cache among them — and can be offlined. ``rootfstype=ramfs`` keeps the initramfs
out of those blocks (ramfs pages are not movable; tmpfs pages would be).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel.fetch import KernelBundle, require_tools

#: Boot memory: the kernel, the rootfs (ramfs) and the job's data live here.
BOOT_MEMORY = 512 << 20

#: Kernel parameters every run needs (see module doc).
BASE_APPEND = (
    "console=ttyS0",
    "quiet",
    "loglevel=1",  # only emergencies on the console: no printk cuts into an RK line
    "panic=-1",
    "memhp_default_state=online_movable",
    "rootfstype=ramfs",
)

ACCELS = ("tcg", "kvm")


class GuestError(HotremoveError):
    """The guest did not produce a result (panic, timeout, no result): exit status 1.
    The message names the cause and the kept console log."""


@dataclass(frozen=True)
class Disk:
    """A raw image on virtio-blk; the guest finds it by ``serial`` (/sys/block/vdX/serial)."""

    path: Path
    serial: str


@dataclass
class MachineSpec:
    bundle: KernelBundle
    dimm_bytes: int
    console: Path
    disks: list[Disk] = field(default_factory=list)
    boot_bytes: int = BOOT_MEMORY
    accel: str = "tcg"
    smp: int = 2
    append: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuestRun:
    """A finished QEMU process: its console output and how long it took on the host."""

    console: Path
    text: str
    wall_seconds: float
    returncode: int


def _mib(n: int) -> str:
    if n % (1 << 20):
        raise ValueError(f"{n} bytes is not a whole number of MiB")
    return f"{n >> 20}M"


def command_line(spec: MachineSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    """The QEMU argv for ``spec`` (pure: the tests check it without starting anything)."""
    if spec.accel not in ACCELS:
        raise HotremoveError(f"unknown accelerator {spec.accel!r} (known: {', '.join(ACCELS)})")
    # -arch-capabilities: a nested KVM guest has been seen to fail on that MSR (0x10a)
    accel = (
        ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]
        if spec.accel == "kvm"
        else ["-accel", "tcg", "-cpu", "max"]
    )
    argv = [
        qemu,
        *accel,
        "-smp",
        str(spec.smp),
        "-m",
        f"{_mib(spec.boot_bytes)},slots=2,maxmem={_mib(spec.boot_bytes + spec.dimm_bytes)}",
        "-object",
        f"memory-backend-ram,id=dimm0mem,size={_mib(spec.dimm_bytes)}",
        "-device",
        "pc-dimm,id=dimm0,memdev=dimm0mem",
        "-kernel",
        str(spec.bundle.vmlinuz),
        "-initrd",
        str(spec.bundle.initramfs),
        "-append",
        " ".join((*BASE_APPEND, *spec.append)),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        f"file:{spec.console}",
        "-no-reboot",
    ]
    for i, disk in enumerate(spec.disks):
        argv += [
            "-drive",
            f"file={_drive_path(disk.path)},if=none,id=disk{i},format=raw,cache=unsafe",
            "-device",
            f"virtio-blk-pci,drive=disk{i},serial={disk.serial}",
        ]
    return argv


def _drive_path(path: Path) -> str:
    """QEMU's -drive splits on commas; a doubled comma is a literal one."""
    return str(path).replace(",", ",,")


def run_machine(spec: MachineSpec, timeout: float) -> GuestRun:
    """Boot ``spec`` and wait for the guest to power off, at most ``timeout`` seconds.
    A guest still running then is killed and reported as a :class:`GuestError`."""
    qemu = require_tools("qemu-system-x86_64")["qemu-system-x86_64"]
    argv = command_line(spec, qemu)
    spec.console.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise GuestError(
            f"guest timed out after {timeout:g} s without a result "
            f"(console log kept: {spec.console})"
        ) from None
    except BaseException:  # Ctrl-C: do not leave the guest running
        _stop(proc)
        raise
    wall = time.monotonic() - t0
    text = _read(spec.console)
    if proc.returncode != 0:
        lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise GuestError(f"qemu failed: {reason} (console log kept: {spec.console})")
    return GuestRun(spec.console, text, wall, proc.returncode)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End our own QEMU process: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace").replace("\r", "")
    except OSError:
        return ""


def choose_accel(bundle: KernelBundle, probe_dir: Path | None = None) -> str:
    """``$HOTREMOVE_QEMU_ACCEL`` if set; else KVM only if /dev/kvm is usable and a quick probe
    boot finishes (a nested KVM guest has been seen to hang at boot); else TCG. The probe's
    verdict is remembered in the kernel's cache entry."""
    forced = os.environ.get("HOTREMOVE_QEMU_ACCEL", "").strip().lower()
    if forced:
        if forced not in ACCELS:
            raise HotremoveError(
                f"HOTREMOVE_QEMU_ACCEL={forced!r}: expected one of {', '.join(ACCELS)}"
            )
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    verdict = bundle.directory / "accel-probe"
    try:
        return "kvm" if verdict.read_text().strip() == "kvm" else "tcg"
    except OSError:
        pass
    work = probe_dir or bundle.directory
    console = work / ".accel-probe.log"
    result = "tcg"
    try:
        run = run_machine(
            MachineSpec(bundle, dimm_bytes=128 << 20, console=console, accel="kvm"), timeout=20
        )
        if "RK boot " in run.text:
            result = "kvm"
    except GuestError:
        result = "tcg"
    finally:
        console.unlink(missing_ok=True)
    tmp = verdict.with_name(".accel-probe.tmp")
    tmp.write_text(result + "\n")
    os.replace(tmp, verdict)
    return result
