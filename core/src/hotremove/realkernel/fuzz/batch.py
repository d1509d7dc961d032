"""Several scenarios in one guest boot: the boot is paid once per batch, not once per case.

Each case keeps the per-run program of :mod:`hotremove.realkernel.job` unchanged: its
``run.sh`` and data live in ``/job/cK/`` of one job disk, its images on disks of their own
(serial ``cKfI``), and a wrapper runs the cases one after the other. Between two cases the
guest restores a clean state: every filesystem unmounted (fresh images for the next case),
caches dropped, and every DIMM block offlined and onlined again in ascending order, as at
boot — so the next case's page cache fills the DIMM lowest block first again
(``placement = "fill"``), not the frames the previous case's offline freed. The console is
cut at the wrapper's ``RK case_begin`` lines and each piece read as one run's console.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hotremove.kernels import KERNELS, get_kernel
from hotremove.realkernel import console, guest
from hotremove.realkernel.fetch import KernelBundle
from hotremove.realkernel.job import job_files
from hotremove.realkernel.qemu import Disk, GuestError, MachineSpec, choose_accel, run_machine
from hotremove.realkernel.report import GuestReport, build_report, golden_md5s
from hotremove.realkernel.run import (
    check_finished,
    check_mirrorable,
    default_guest_timeout,
    make_plan,
    not_comparable,
    offline_timeout,
    ordered_blocks,
    writeback_sysctls,
)
from hotremove.scenario import Scenario

#: set when the fuzz run is interrupted: no further guest starts (a running one finishes)
STOP = threading.Event()

#: most virtio disks one guest gets (PCI slots of QEMU's i440fx machine, with room to spare)
MAX_DISKS = 24

WRAPPER = r"""# hotremove fuzz: several cases in one boot, a clean state between them
set -u
restore() {
    for m in /mnt/*; do umount "$m" 2>/dev/null; done
    sync
    echo 3 > "/proc/sys/vm/drop_caches"  # in the guest, like the sysctls
    M=/sys/devices/system/memory
    for n in $(ls $M | sed -n 's/^memory//p' | sort -n -r); do
        grep -q Movable "$M/memory$n/valid_zones" 2>/dev/null || continue
        [ "$(cat $M/memory$n/state)" = online ] && echo offline > $M/memory$n/state 2>/dev/null
    done
    for n in $(ls $M | sed -n 's/^memory//p' | sort -n); do
        [ "$(cat $M/memory$n/state)" = offline ] && echo online_movable > $M/memory$n/state
    done
    echo "RK restored"
}
for k in @CASES@; do
    echo "RK case_begin id=$k"
    sh /job/c$k/run.sh
    echo "RK case_end id=$k rc=$?"
    restore
done
"""


@dataclass
class Outcome:
    """One case's guest run: its report, or why there is none."""

    report: GuestReport | None
    error: str = ""


def _segments(text: str, count: int) -> list[str]:
    """The console cut at each ``RK case_begin id=K`` line: ``count`` pieces ("" when a
    case never began)."""
    pieces = [""] * count
    current: int | None = None
    lines: list[str] = []
    for line in text.replace("\r", "").splitlines():
        if line.startswith("RK case_begin id="):
            if current is not None:
                pieces[current] = "\n".join(lines)
            current, lines = int(line.split("=", 1)[1]), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        pieces[current] = "\n".join(lines)
    return pieces


@contextlib.contextmanager
def machine_lock(path: Path | None) -> Iterator[None]:
    """Hold ``path`` (flock) for one guest: machines that share QEMU take turns per guest."""
    if path is None:
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_batch(
    scenarios: Sequence[tuple[str, Scenario]],
    version: str,
    *,
    workdir: Path,
    bundle: KernelBundle,
    accel: str | None = None,
    lock: Path | None = None,
) -> list[Outcome]:
    """Run every (name, scenario) in one guest of Linux ``version``; all must share one
    ``memory.size`` (the DIMM). A case that cannot be built or whose run gives no result is
    an :class:`Outcome` with its error; a guest that never finished fails the cases it did
    not finish."""
    from hotremove.plugins import load_plugins
    from hotremove.workload import build

    if len({s.memory.size for _, s in scenarios}) > 1:
        raise ValueError("a batch shares one DIMM: every scenario needs the same memory.size")
    kernel = get_kernel(version) if version in KERNELS else None
    workdir.mkdir(parents=True, exist_ok=True)
    hooks = load_plugins().hooks
    files: dict[str, bytes] = {}
    disks: list[Disk] = []
    prepared: dict[int, tuple[Scenario, dict[str, dict[str, str]], int]] = {}
    outcomes = [Outcome(None) for _ in scenarios]
    limit = 600.0
    for k, (_name, scn) in enumerate(scenarios):
        try:
            check_mirrorable(scn, version)
            if len(disks) + len(scn.filesystem) > MAX_DISKS:
                raise GuestError("too many disks for one guest: run it in a later batch")
            off = offline_timeout(scn, None)
            built = build(scn, hooks, workdir / f"c{k}" / "images")
            try:
                plan = make_plan(
                    scn, built, timeout=off, sysctls=writeback_sysctls(scn), kernel=kernel
                )
                expected = golden_md5s(built.golden.files)
                images = dict(built.images)
            finally:
                built.machine.close()
        except Exception as exc:  # a case that cannot be built is that case's error only
            outcomes[k].error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        fss = tuple(
            dataclasses.replace(fs, serial=f"c{k}f{i}") for i, fs in enumerate(plan.filesystems)
        )
        plan = dataclasses.replace(
            plan, filesystems=fss, idle=int(scn.remove.start), scan_removed_only=True
        )
        for fs in fss:
            disks.append(Disk(images[fs.name], fs.serial))
        for name, data in job_files(plan).items():
            if name == "run.sh":
                data = data.decode().replace("/job/", f"/job/c{k}/").encode()
            files[f"c{k}/{name}"] = data
        prepared[k] = (scn, expected, off)
        limit += default_guest_timeout(scn, off) - 600 + 120 + int(scn.remove.start)
    if not prepared:
        return outcomes
    files["run.sh"] = WRAPPER.replace("@CASES@", " ".join(str(k) for k in prepared)).encode()
    job = workdir / "job.img"
    job.write_bytes(guest.job_disk(files))
    disks.append(Disk(job, guest.JOB_SERIAL))
    log = workdir / f"console-{version}.log"
    accel = accel or choose_accel(bundle)
    dimm = next(iter(prepared.values()))[0].memory.size
    spec = MachineSpec(bundle, dimm_bytes=dimm, console=log, disks=disks, accel=accel)
    try:
        with machine_lock(lock):
            if STOP.is_set():
                raise GuestError("interrupted before this guest started")
            run = run_machine(spec, timeout=limit)
    except GuestError as exc:
        for k in prepared:
            outcomes[k].error = str(exc)
        return outcomes
    pieces = _segments(run.text, len(scenarios))
    for k, (scn, expected, _off) in prepared.items():
        records = console.parse(pieces[k])
        try:
            check_finished(pieces[k] or run.text, records, log)
        except GuestError as exc:
            outcomes[k].error = str(exc)
            continue
        outcomes[k].report = build_report(
            records,
            scenario=scenarios[k][0],
            kernel={"version": version, "release": bundle.release, "package": bundle.package},
            accel=accel,
            blocks=list(ordered_blocks(scn)),
            expected_md5=expected,
            wall_seconds=run.wall_seconds / len(prepared),
            not_comparable=not_comparable(scn),
            console_log=str(log),
        )
    return outcomes
