"""A scenario on a real kernel: build the images, plan the guest's work, boot, report.

The images are built by the project's builder — the very bytes a simulator run starts from —
and the dirtying writes are the builder's own (``golden.iter_writes()``), so the guest's page
cache holds the same dirty bytes in the same files at the same offsets. What the guest cannot
reproduce is either refused up front (one line) or named in the report's ``not_comparable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hotremove.errors import HotremoveError
from hotremove.fs.fstype import GuestMount
from hotremove.kernels import KERNELS, Kernel, get_kernel
from hotremove.mm.memory_block import removal_order
from hotremove.realkernel import console, guest
from hotremove.realkernel.fetch import KernelBundle, fetch_kernel
from hotremove.realkernel.job import (
    OUT_SERIAL,
    FsPlan,
    GuestPlan,
    check_plan,
    job_files,
    merge_writes,
)
from hotremove.realkernel.qemu import (
    BOOT_MEMORY,
    Disk,
    GuestError,
    MachineSpec,
    choose_accel,
    run_machine,
)
from hotremove.realkernel.report import GuestReport, build_report, golden_md5s
from hotremove.scenario import Scenario

#: The x86-64 memory block size: simulated block i is the DIMM's i-th memory block.
X86_BLOCK_SIZE = 128 << 20
#: Largest DIMM the harness boots (RAM-backed on the host, scanned page by page in the guest).
MAX_DIMM = 4 << 30
#: Writes the guest replays; each run of adjacent bytes is one ``dd`` (seconds under TCG).
MAX_WRITE_RUNS = 20_000
#: Default limit for one block's offline before the signal (-EINTR).
DEFAULT_OFFLINE_TIMEOUT = 60

#: Periodic writeback off: the flusher never runs and nothing expires; throttling never starts.
WRITEBACK_OFF = {
    "dirty_writeback_centisecs": 0,
    "dirty_expire_centisecs": 360_000,
    "dirty_background_ratio": 90,
    "dirty_ratio": 95,
}

Progress = Callable[[str], None]


def guest_mounts(scenario: Scenario, kernel: Kernel | None = None) -> list[GuestMount]:
    """How the guest mounts each filesystem (its type's ``guest(cfg, kernel)``; ``kernel``:
    the guest's, default the scenario's). What a type cannot mount as the scenario says is
    one line naming the key."""
    from hotremove.fs.registry import resolve

    kernel = kernel or get_kernel(scenario.kernel.version)
    mounts = []
    for i, fs in enumerate(scenario.filesystem):
        try:
            mounts.append(resolve(fs.type).guest(fs, kernel))
        except ValueError as exc:
            raise HotremoveError(f"filesystem[{i}].{exc}") from None
    return mounts


def check_mirrorable(scenario: Scenario, version: str | None = None) -> None:
    """Refuse, in one line, what a guest (Linux ``version``: default the scenario's kernel)
    cannot reproduce at all."""
    mem = scenario.memory
    if mem.block_size != X86_BLOCK_SIZE:
        raise HotremoveError(
            f"memory.block_size: a real x86-64 kernel has 128MiB memory blocks "
            f"(got {mem.block_size >> 20}MiB)"
        )
    if mem.size > MAX_DIMM:
        raise HotremoveError(
            f"memory.size: the guest's DIMM is at most {MAX_DIMM >> 30}GiB "
            f"(got {mem.size >> 20}MiB)"
        )
    if not scenario.filesystem:
        raise HotremoveError("filesystem: the guest needs at least one filesystem")
    guest_mounts(scenario, get_kernel(version) if version in KERNELS else None)
    faults = scenario.faults
    if faults.writeback_eio or faults.enomem_after is not None or faults.plugin_raises:
        raise HotremoveError("faults: injected faults cannot be mirrored in a real kernel")


def not_comparable(scenario: Scenario) -> list[str]:
    """What the guest run does not reproduce, always named (never silently dropped)."""
    wl = scenario.workload
    notes = (
        [
            "page placement: the guest's page cache fills the DIMM's blocks lowest first "
            "(placement 'fill', after the guest's own few pages), not "
            f"workload.placement={wl.placement!r}; per-block counts differ"
        ]
        if wl.placement != "fill"
        else []
    )
    notes += [
        "failed: the kernel counts failed migration attempts (pgmigrate_fail, every pass), "
        "the simulator failed pages",
        "times: guest seconds are of an emulated CPU, not the simulator's cost model",
        "remove: the kernel's offline_pages (MIGRATE_SYNC, its own retry loop) runs, not "
        f"remove.mode={scenario.remove.mode!r}/strategy={scenario.remove.strategy!r}",
        "pages_in_region: every used page of the block (kernel allocations included), "
        "from /proc/kpageflags",
    ]
    kernel = getattr(scenario, "kernel", None)
    for key in ("dirty_writeback_centisecs", "dirty_expire_centisecs"):
        if kernel is not None and _explicit(kernel, key) is None:
            notes.append(
                f"kernel.{key}: not set in the scenario; the guest runs with periodic "
                f"writeback off, the simulator with its default {getattr(kernel, key)}"
            )
    if wl.cached < 1:
        notes.append(f"workload.cached={wl.cached}: the guest reads whole files")
    planted = {
        "writeback": wl.writeback,
        "locked": wl.locked,
        "pinned": wl.pinned,
        "unmovable": wl.unmovable,
        "anon": wl.anon,
        "swapcache": wl.swapcache,
        "mlocked": wl.mlocked,
        "thp": wl.thp,
    }
    for key, value in planted.items():
        if value:
            notes.append(f"workload.{key}={value}: not planted in the guest")
    return notes


def _explicit(section: Any, key: str) -> Any:
    """``section.key`` when the scenario file set it, else None (schema defaults do not
    count: a scenario that says nothing about writeback gets the guest's default, off)."""
    if section is None or key not in getattr(section, "model_fields_set", ()):
        return None
    return getattr(section, key, None)


def writeback_sysctls(scenario: Scenario) -> dict[str, int]:
    """Writeback off unless the scenario's ``[kernel]`` section sets the flusher's period or
    the dirty expiry (then those values, as the simulator uses them)."""
    sysctls = dict(WRITEBACK_OFF)
    kernel = getattr(scenario, "kernel", None)
    for key in ("dirty_writeback_centisecs", "dirty_expire_centisecs"):
        value = _explicit(kernel, key)
        if value is not None:
            sysctls[key] = int(value)
    return sysctls


def offline_timeout(scenario: Scenario, override: int | None) -> int:
    """Seconds one block's offline may take: the command line, else ``remove.timeout``."""
    if override is not None:
        return override
    value = getattr(scenario.remove, "timeout", None)
    return max(1, math.ceil(value)) if value else DEFAULT_OFFLINE_TIMEOUT


def dirtying_writes(built: Any) -> list[tuple[str, str, int, int]]:
    """The builder's write()s, in order: (fs, path, position, length)."""
    golden = built.golden
    if hasattr(golden, "iter_writes"):
        return list(golden.iter_writes())
    writes = getattr(golden, "writes", None)
    if writes is not None:
        return [(fs, path, int(pos), int(length)) for fs, path, pos, length in writes]
    raise HotremoveError("this hotremove's builder does not record its writes (golden.writes)")


def payload(files: dict[tuple[str, str], Any], runs: Iterable[tuple[str, str, int, int]]) -> bytes:
    """The final bytes of every merged write, concatenated in order."""
    return b"".join(bytes(files[(fs, path)][pos : pos + n]) for fs, path, pos, n in runs)


def make_plan(
    scenario: Scenario,
    built: Any,
    *,
    timeout: int,
    sysctls: dict[str, int],
    remove_blocks: tuple[int, ...] | None = None,
    dump_snapshot: bool = False,
    remedies: tuple[str, ...] = (),
    staged: bool = False,
    synced: tuple[str, ...] = (),
    kernel: Kernel | None = None,
) -> GuestPlan:
    """What the guest does (``kernel``: the guest's, for how each type mounts there)."""
    runs = merge_writes(dirtying_writes(built))
    if len(runs) > MAX_WRITE_RUNS:
        raise HotremoveError(
            f"workload: {len(runs)} separate write extents; the guest replays at most "
            f"{MAX_WRITE_RUNS} (lower workload.dirty or use dirty_buffers = 'whole')"
        )
    filesystems = tuple(
        FsPlan(
            name=fs.name,
            fstype=mount.fstype,
            options=tuple(mount.options),
            serial=f"hrfs{i}",
            files=tuple(path for (name, path) in built.golden.files if name == fs.name),
        )
        for i, (fs, mount) in enumerate(
            zip(scenario.filesystem, guest_mounts(scenario, kernel), strict=True)
        )
    )
    guest_plan = GuestPlan(
        filesystems=filesystems,
        writes=tuple(runs),
        payload=payload(built.golden.files, runs),
        remove_blocks=ordered_blocks(scenario) if remove_blocks is None else remove_blocks,
        dimm_blocks=scenario.memory.size // X86_BLOCK_SIZE,
        offline_timeout=timeout,
        sysctls=sysctls,
        dump_snapshot=dump_snapshot,
        remedies=remedies,
        staged=staged,
        synced=synced,
    )
    try:
        check_plan(guest_plan)
    except ValueError as exc:
        raise HotremoveError(str(exc)) from None
    return guest_plan


def ordered_blocks(scenario: Scenario) -> tuple[int, ...]:
    """The scenario's blocks in the order the guest offlines them: ``remove.order``, as the
    simulator does (:func:`hotremove.mm.memory_block.removal_order`)."""
    rm = scenario.remove
    return tuple(removal_order(list(rm.blocks), getattr(rm, "order", "ascending")))


def default_guest_timeout(scenario: Scenario, offline_seconds: int) -> float:
    """Wall-clock limit for the whole guest: boot, the workload, every offline at its limit,
    and the checks; generous, since TCG is slow and a busy host slower still."""
    data = sum(fs.files * fs.file_size for fs in scenario.filesystem)
    return 600 + offline_seconds * len(scenario.remove.blocks) + data / (1 << 20)


def run_in_guest(
    scenario: Scenario,
    version: str,
    *,
    workdir: Path,
    timeout: float | None = None,
    name: str = "scenario",
    offline_seconds: int | None = None,
    accel: str | None = None,
    progress: Progress | None = None,
    bundle: KernelBundle | None = None,
    remove_blocks: tuple[int, ...] | None = None,
    dump_dir: Path | None = None,
    remedies: tuple[str, ...] = (),
    staged: bool = False,
    synced: tuple[str, ...] = (),
) -> GuestReport:
    """Run ``scenario`` on Debian's Linux ``version`` in QEMU; ``workdir`` keeps the images,
    the job disk and the console log (its path is in every :class:`GuestError`).

    ``remove_blocks``: the DIMM's blocks to offline, in this order (default: the scenario's,
    in ``remove.order``).
    ``dump_dir``: copy the files ``hotremove snapshot`` reads there, as they were just before
    the first offline (:func:`hotremove.realmachine.snapshot.from_dump` reads them).
    ``remedies``: after the offlines, each in turn while a block is still online, followed by
    another offline of every block that failed (:data:`hotremove.realkernel.job.REMEDIES`).
    ``staged``: each filesystem's page cache in its own DIMM block (:class:`GuestPlan`);
    ``synced``: filesystems written back after their writes (clean page cache)."""
    from hotremove.plugins import load_plugins
    from hotremove.workload import build

    say = progress or (lambda _msg: None)
    check_mirrorable(scenario, version)
    bundle = bundle or fetch_kernel(version, progress=say)
    workdir.mkdir(parents=True, exist_ok=True)
    off_timeout = offline_timeout(scenario, offline_seconds)
    say("building the scenario's images")
    built = build(scenario, load_plugins().hooks, workdir / "images")
    try:
        plan = make_plan(
            scenario,
            built,
            timeout=off_timeout,
            sysctls=writeback_sysctls(scenario),
            remove_blocks=remove_blocks,
            dump_snapshot=dump_dir is not None,
            remedies=remedies,
            staged=staged,
            synced=synced,
            kernel=get_kernel(version) if version in KERNELS else None,
        )
        expected = golden_md5s(built.golden.files)
        images = dict(built.images)
    finally:
        built.machine.close()
    del built
    disks = [Disk(images[fs.name], fs.serial) for fs in plan.filesystems]
    job = workdir / "job.img"
    job.write_bytes(guest.job_disk(job_files(plan)))
    disks.append(Disk(job, guest.JOB_SERIAL))
    out = workdir / "out.img"
    if dump_dir is not None:
        out.unlink(missing_ok=True)
        with out.open("wb") as f:  # sparse: the guest writes a tar archive from sector 0
            f.truncate(out_disk_bytes(scenario.memory.size))
        disks.append(Disk(out, OUT_SERIAL))
    log = workdir / f"console-{version}.log"
    accel = accel or choose_accel(bundle)
    spec = MachineSpec(
        bundle, dimm_bytes=scenario.memory.size, console=log, disks=disks, accel=accel
    )
    limit = timeout or default_guest_timeout(scenario, off_timeout)
    say(f"booting {bundle.release} ({accel}, limit {limit:.0f} s)")
    run = run_machine(spec, timeout=limit)
    records = console.parse(run.text)
    check_finished(run.text, records, log)
    if dump_dir is not None:
        unpack_dump(out, dump_dir, log)
    blocks = list(remove_blocks) if remove_blocks is not None else list(ordered_blocks(scenario))
    return build_report(
        records,
        scenario=name,
        kernel={"version": version, "release": bundle.release, "package": bundle.package},
        accel=accel,
        blocks=blocks,
        expected_md5=expected,
        wall_seconds=run.wall_seconds,
        not_comparable=not_comparable(scenario),
        console_log=str(log),
    )


def out_disk_bytes(dimm_bytes: int) -> int:
    """Room for a snapshot dump: 16 bytes per page (kpageflags and kpagecount) of boot memory
    and DIMM, plus the small text files and the tar headers."""
    pages = (BOOT_MEMORY + dimm_bytes) // 4096
    return (16 * pages + (16 << 20) + 0xFFFFF) & ~0xFFFFF


def unpack_dump(image: Path, into: Path, log: Path) -> None:
    """The guest's tar archive on the results disk → ``into`` (plain files and directories
    only, no path outside it)."""
    import tarfile

    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(image, mode="r:") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise GuestError(f"snapshot dump: bad member {member.name!r}")
                if member.isdir():
                    (into / name).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    (into / name).parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    (into / name).write_bytes(src.read())
    except (tarfile.TarError, OSError) as exc:
        raise GuestError(f"snapshot dump unreadable: {exc} (console log kept: {log})") from None


def check_finished(text: str, records: list[console.Record], log: Path) -> None:
    """A guest that panicked, reported an error or stopped early is a :class:`GuestError`."""
    error = console.first(records, "error")
    if error is not None:
        raise GuestError(f"guest: {error.fields.get('what', 'error')} (console log kept: {log})")
    if console.first(records, "end") is None:
        panic = console.panic_line(text)
        if panic:
            raise GuestError(f"guest kernel: {panic} (console log kept: {log})")
        raise GuestError(
            f"guest ended without a result (last line: {console.last_line(text)}; "
            f"console log kept: {log})"
        )
