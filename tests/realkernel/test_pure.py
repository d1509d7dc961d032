"""The harness's pure parts, without booting anything: the initramfs archive, the job disk,
write merging, console parsing, the guest report, the QEMU command line, refusals."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from hotremove.errors import HotremoveError
from hotremove.realkernel import console, cpio, guest
from hotremove.realkernel.fetch import (
    KernelBundle,
    check_version,
    kernel_cache_root,
    load_order,
    missing_modules,
    module_name,
    parse_modules_dep,
)
from hotremove.realkernel.job import FsPlan, GuestPlan, job_files, merge_writes, script
from hotremove.realkernel.qemu import Disk, MachineSpec, command_line
from hotremove.realkernel.report import build_report, offline_error
from hotremove.realkernel.run import check_mirrorable, not_comparable, writeback_sysctls
from hotremove.realkernel.timeline import on_guest_timeline
from hotremove.scenario import load, loads

SMALL = """
[memory]
size = "512MiB"
block_size = "128MiB"

[[filesystem]]
name = "data"
type = "ext2"
size = "8MiB"
files = 4
file_size = "16KiB"

[remove]
blocks = [0]
"""


def test_unknown_version_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(HotremoveError) as exc:
        check_version("4.19")
    message = str(exc.value)
    assert "\n" not in message
    assert message == "unknown kernel version '4.19' (known: 5.10, 6.1, 6.12, 7.2)"


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOTREMOVE_KERNEL_CACHE", raising=False)
    monkeypatch.delenv("HOTREMOVE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert kernel_cache_root() == Path("/x/cache/hotremove/kernels")
    monkeypatch.setenv("HOTREMOVE_CACHE", "/y")
    assert kernel_cache_root() == Path("/y/kernels")
    monkeypatch.setenv("HOTREMOVE_KERNEL_CACHE", "/z/k")
    assert kernel_cache_root() == Path("/z/k")


def test_modules_come_after_their_dependencies() -> None:
    deps = parse_modules_dep(
        "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz "
        "kernel/fs/jbd2/jbd2.ko.xz\n"
        "kernel/fs/jbd2/jbd2.ko.xz:\nkernel/fs/mbcache.ko.xz:\nkernel/lib/crc16.ko.xz:\n"
        "kernel/crypto/crc32c_generic.ko.xz:\n"
        "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz\n"
        "kernel/drivers/virtio/virtio.ko.xz:\n"
    )
    order = [module_name(p) for p in load_order(deps, ("virtio_pci", "virtio_blk", "ext4"))]
    assert order == ["virtio", "virtio_blk", "crc16", "mbcache", "jbd2", "ext4"]
    assert module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst") == "crc32c_intel"


def test_an_entry_built_for_fewer_modules_is_stale(tmp_path: Path) -> None:
    """A cached initramfs made before a filesystem plugin was installed lacks its modules:
    fetch rebuilds it (the list each entry was built for is in its bundle.json)."""
    wanted = ("virtio_blk", "ext4", "vfat", "nls_cp437", "xfs")
    (tmp_path / "bundle.json").write_text('{"format": 1, "modules": ["ext4.ko"]}')
    assert missing_modules(tmp_path, wanted) == wanted  # recorded nothing: rebuilt once
    (tmp_path / "bundle.json").write_text('{"wanted": ["virtio_blk", "ext4", "vfat"]}')
    assert missing_modules(tmp_path, wanted) == ("nls_cp437", "xfs")
    assert missing_modules(tmp_path, ("ext4", "vfat")) == ()  # a superset serves
    assert missing_modules(tmp_path / "absent", ("ext4",)) == ("ext4",)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_cpio_archive_lists_with_cpio(tmp_path: Path) -> None:
    entries = [
        cpio.directory("bin"),
        cpio.regular("bin/busybox", b"\x7fELF" + b"x" * 1001, executable=True),
        cpio.symlink("bin/sh", "busybox"),
        cpio.regular("init", b"#!/bin/sh\n", executable=True),
    ]
    archive = cpio.newc(entries)
    listed = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    assert [line.split()[-1] for line in listed.splitlines()][:3] == [
        "bin",
        "bin/busybox",
        "busybox",
    ]
    assert "bin/sh -> busybox" in listed
    assert listed.splitlines()[1].startswith("-rwxr-xr-x")


def test_job_disk_header_and_archive() -> None:
    data = guest.job_disk({"run.sh": b"echo hi\n", "payload": b"\1\2\3"})
    header = data[: guest.JOB_BLOCK].rstrip(b"\0").split()
    assert header[0] == guest.JOB_MAGIC
    blocks = int(header[1])
    assert len(data) == (blocks + 1) * guest.JOB_BLOCK  # O_DIRECT reads whole blocks
    with tarfile.open(fileobj=io.BytesIO(data[guest.JOB_BLOCK :])) as tar:
        assert tar.extractfile("payload").read() == b"\1\2\3"  # type: ignore[union-attr]
        assert tar.getmember("run.sh").mode == 0o755


def test_writes_merge_only_when_adjacent() -> None:
    writes = [
        ("a", "f1", 4096, 1024),
        ("a", "f1", 0, 1024),
        ("a", "f1", 1024, 1024),
        ("a", "f2", 0, 10),
        ("a", "f1", 5120, 1024),
        ("a", "f1", 8192, 0),
    ]
    assert merge_writes(writes) == [
        ("a", "f1", 0, 2048),
        ("a", "f1", 4096, 2048),
        ("a", "f2", 0, 10),
    ]


def _plan() -> GuestPlan:
    return GuestPlan(
        filesystems=(FsPlan("data", "ext4", ("data=journal",), "hrfs0", ("f00000", "f00001")),),
        writes=(("data", "f00000", 0, 3), ("data", "f00001", 4096, 2)),
        payload=b"abcde",
        remove_blocks=(1, 0),
        dimm_blocks=4,
        offline_timeout=20,
        sysctls={"dirty_writeback_centisecs": 0},
    )


def test_job_files_carry_the_plan() -> None:
    files = job_files(_plan())
    assert files["writes"] == b"data f00000 0 3 0\ndata f00001 3 2 4096\n"
    assert files["files-data"] == b"f00000\nf00001\n"
    text = script(_plan())
    assert "FILESYSTEMS=data:ext4:data=journal:hrfs0\n" in text
    assert "REMOVE='1 0'" in text and "OFFTO=20" in text and "NDIMM=4" in text
    bad = GuestPlan(**{**_plan().__dict__, "payload": b"abc"})
    with pytest.raises(ValueError):
        job_files(bad)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_the_guest_script_is_valid_shell() -> None:
    subprocess.run(["busybox", "sh", "-n", "-c", script(_plan())], check=True)


CONSOLE = """\
[    0.000000] Linux version 6.12.117+deb12-amd64
RK boot release=6.12.117+deb12-amd64
RK dimm block_size=134217728 blocks=32,33,34,35
RK sysctl name=dirty_writeback_centisecs value=0
RK read t0=8.35 t1=8.62
RK write runs=528 t0=8.95 t1=15.36
RK kpf tag=before_offline sim=0 block=32 pages=32768 nopage=0 buddy=29668 used=2119 slab=0 \
file=2048 file_dirty=418 file_private=418 file_writeback=0 anon=71 thp=0
RK kpf tag=before_offline sim=1 block=33 pages=32768 nopage=0 buddy=32768 used=0 slab=0 \
file=0 file_dirty=0 file_private=0 file_writeback=0 anon=0 thp=0
RK vmstat tag=before_offline pgmigrate_success=10 pgmigrate_fail=0 nr_dirty=424 nr_written=5 \
pgpgout=100
RK offline sim=0 block=32 rc=143 t0=23.43 t1=43.50 state=online err=Terminated
[   30.1] migrating pfn 10084d failed ret:418
RK vmstat tag=after_offline_0 pgmigrate_success=1705 pgmigrate_fail=372438 nr_dirty=424 \
nr_written=5 pgpgout=100
RK kpf tag=after_offline_0 sim=0 block=32 pages=32768 nopage=0 buddy=32303 used=465 slab=0 \
file=418 file_dirty=418 file_private=418 file_writeback=0 anon=47 thp=0
RK dmesg [   33.7] page dumped because: migration failure
RK md5 fs=data path=f00000 sum=0cc175b9c0f1b6a831c399e269772661
RK md5 fs=data path=f00001 sum=ffffffffffffffffffffffffffffffff
RK end
""".replace("\\\n", "")


def test_console_records_and_the_report() -> None:
    records = console.parse(CONSOLE)
    assert [r.kind for r in records][:3] == ["boot", "dimm", "sysctl"]
    assert console.first(records, "dmesg").text.endswith("migration failure")  # type: ignore[union-attr]
    report = build_report(
        records,
        scenario="s",
        kernel={"version": "6.12"},
        accel="tcg",
        blocks=[0],
        expected_md5={
            ("data", "f00000"): "0cc175b9c0f1b6a831c399e269772661",
            ("data", "f00001"): "00000000000000000000000000000000",
            ("data", "f00002"): "00000000000000000000000000000000",
        },
        wall_seconds=54.2,
        not_comparable=["x"],
    )
    d = report.as_dict()
    assert d["offlined"] is False and d["reason"] == "block 0 (memory32): -EINTR"
    assert d["migrated"] == 1695 and d["failed"] == 372438 and d["written_back"] == 0
    assert d["pages_in_region"] == 2119 and d["file_pages_in_region"] == 2048
    assert d["other_pages_in_region"] == 71 and d["dirty_pages_in_region"] == 418
    assert d["dimm_blocks"] == [32, 33, 34, 35]
    assert d["per_block"][0]["seconds"] == 20.07
    assert d["times"]["write_seconds"] == 6.41
    assert d["times"]["idle_seconds"] == 8.07  # from the last write to the offline
    assert d["held"] == 418  # page cache still in the block after -EINTR
    example = Path(__file__).resolve().parents[2] / "examples" / "realkernel"
    timed, timeline = on_guest_timeline(load(example / "ext4-journal-small.toml"), report)
    assert timeline == {"write_seconds": 6.41, "start": 8.07}
    assert (timed.workload.write_seconds, timed.remove.start) == (6.41, 8.07)
    assert d["verify"]["files_checked"] == 2 and not d["verify"]["ok"]
    assert len(d["verify"]["mismatches"]) == 2  # one differs, one never reported
    assert report.exit_status == 1


def test_offline_errors() -> None:
    assert offline_error(0, "", "offline") is None
    assert offline_error(1, "sh:_write_error:_Device_or_resource_busy", "online") == "EBUSY"
    assert offline_error(143, "Terminated", "online") == "EINTR"  # killed by the signal
    assert offline_error(1, "sh:_write_error:_Interrupted_system_call", "online") == "EINTR"


def test_panic_and_last_line() -> None:
    text = "boot\nKernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n"
    assert console.panic_line(text) == (
        "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
    )
    assert console.panic_line("RK end\n") is None
    assert console.last_line("a\nb\n\n") == "b"


def test_qemu_command_line(tmp_path: Path) -> None:
    bundle = KernelBundle(
        "6.1", "6.1.0-57-amd64", "pkg", "1", tmp_path / "vmlinuz", tmp_path / "i.gz", tmp_path
    )
    spec = MachineSpec(
        bundle,
        dimm_bytes=512 << 20,
        console=tmp_path / "console.log",
        disks=[Disk(tmp_path / "a,b.img", "hrfs0"), Disk(tmp_path / "job.img", "hrjob")],
    )
    argv = command_line(spec)
    joined = " ".join(argv)
    assert argv[argv.index("-m") + 1] == "512M,slots=2,maxmem=1024M"
    assert "memory-backend-ram,id=dimm0mem,size=512M" in argv
    assert "pc-dimm,id=dimm0,memdev=dimm0mem" in argv
    append = argv[argv.index("-append") + 1].split()
    assert "memhp_default_state=online_movable" in append and "panic=-1" in append
    assert "rootfstype=ramfs" in append
    assert "-no-reboot" in argv and f"file:{tmp_path}/console.log" in argv
    assert f"file={tmp_path}/a,,b.img,if=none,id=disk0,format=raw,cache=unsafe" in argv
    assert "virtio-blk-pci,drive=disk1,serial=hrjob" in argv
    assert "-accel tcg -cpu max" in joined
    spec.accel = "kvm"
    assert "-accel kvm -cpu host,-arch-capabilities" in " ".join(command_line(spec))
    spec.accel = "hvf"
    with pytest.raises(HotremoveError):
        command_line(spec)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('block_size = "128MiB"', 'block_size = "64MiB"'), "memory.block_size"),
        (('type = "ext2"', 'type = "ext2"\noptions = ["nobh"]'), "options: 'nobh'"),
        (("[remove]", "[faults]\nwriteback_eio = 0.5\n[remove]"), "faults"),
    ],
)
def test_what_a_guest_cannot_mirror_is_refused_in_one_line(
    change: tuple[str, str], key: str
) -> None:
    scenario = loads(SMALL.replace(*change))
    with pytest.raises(HotremoveError) as exc:
        check_mirrorable(scenario)
    assert key in str(exc.value) and "\n" not in str(exc.value)


def test_what_is_not_mirrored_is_named() -> None:
    scenario = loads(SMALL + '\n[workload]\ncached = 0.5\nanon = "1MiB"\nunmovable = 3\n')
    check_mirrorable(scenario)
    notes = " ".join(not_comparable(scenario))
    for word in ("placement", "workload.cached", "workload.anon", "workload.unmovable"):
        assert word in notes
    assert "kernel.dirty_writeback_centisecs: not set in the scenario" in notes
    assert writeback_sysctls(scenario)["dirty_writeback_centisecs"] == 0
    assert writeback_sysctls(scenario)["dirty_ratio"] == 95


def test_writeback_follows_the_scenario_only_where_it_says_so() -> None:
    scenario = loads(SMALL + "\n[kernel]\ndirty_writeback_centisecs = 500\n")
    sysctls = writeback_sysctls(scenario)
    assert sysctls["dirty_writeback_centisecs"] == 500
    assert sysctls["dirty_expire_centisecs"] == 360_000  # not set: still off
    notes = " ".join(not_comparable(scenario))
    assert "kernel.dirty_writeback_centisecs" not in notes
    assert "kernel.dirty_expire_centisecs" in notes


def test_missing_tools_are_one_line_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotremove.realkernel.fetch import fetch_kernel

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HotremoveError) as exc:
        fetch_kernel("6.1", cache=tmp_path / "cache")
    message = str(exc.value)
    assert "\n" not in message
    assert "qemu-system-x86_64" in message and "apt-get install" in message
    assert "qemu-system-x86" in message.split("apt-get install")[1]
    assert not (tmp_path / "cache").exists()


def _kernel_cli(*args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hotremove.cli.kernel", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _kernel_cli("fetch", "4.19")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("hotremove: error: unknown kernel version '4.19'")
    assert result.stderr.count("\n") == 1
    result = _kernel_cli("run", str(tmp_path / "nope.toml"), "--kernel", "6.1")
    assert result.returncode == 2 and "no such scenario file" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace('block_size = "128MiB"', 'block_size = "64MiB"'))
    result = _kernel_cli("run", str(bad), "--kernel", "6.1", "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert "memory.block_size" in result.stderr and result.stderr.count("\n") == 1
    result = _kernel_cli("diff", str(bad), "--kernel", "6.1,4.19")
    assert result.returncode == 2 and "'4.19'" in result.stderr
    good = tmp_path / "good.toml"
    good.write_text(SMALL)
    result = _kernel_cli("run", str(good))  # no --kernel and no [kernel] version
    assert result.returncode == 2
    assert "--kernel: name a version (5.10, 6.1, 6.12, 7.2)" in result.stderr


def test_a_guest_without_a_result_is_a_guest_error_naming_the_log(tmp_path: Path) -> None:
    from hotremove.realkernel.qemu import GuestError
    from hotremove.realkernel.run import check_finished

    log = tmp_path / "console.log"
    panic = "RK boot release=x\n[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n"
    cases = {
        panic: "guest kernel: Kernel panic - not syncing: Attempted to kill init!",
        "RK boot release=x\nRK error what=mount_data\n": "guest: mount_data",
        "RK boot release=x\nRK read t0=1 t1=2\n": "guest ended without a result",
    }
    for text, start in cases.items():
        with pytest.raises(GuestError) as exc:
            check_finished(text, console.parse(text), log)
        assert str(exc.value).startswith(start)
        assert str(log) in str(exc.value) and "\n" not in str(exc.value)
    # a non-fatal BUG report in the guest's dmesg does not hide a finished run
    done = "RK dmesg [ 9.0] BUG: Bad page state in process sh\nRK end\n"
    check_finished(done, console.parse(done), log)


def test_an_unreachable_archive_is_one_line_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    """The private apt configuration reads only the mirrors it is given: with both pointed at a
    closed local port, ``kernel fetch`` fails in one line (exit 1: the input was fine) and
    the cache holds neither an entry nor a temporary directory."""
    missing = [
        t for t in ("apt-get", "dpkg", "qemu-system-x86_64", "busybox") if not shutil.which(t)
    ]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"{', '.join(missing)} not installed")
    import sys

    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "HOTREMOVE_KERNEL_CACHE": str(cache),
        "HOTREMOVE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
        "HOTREMOVE_DEBIAN_SECURITY_MIRROR": "http://127.0.0.1:9/debian-security",
    }
    result = subprocess.run(
        [sys.executable, "-m", "hotremove.cli.kernel", "fetch", "6.12"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("hotremove: error:")]
    assert len(lines) == 1, result.stderr
    assert "cannot read the Debian archive" in lines[0] and "127.0.0.1:9" in lines[0]
    assert os.listdir(cache) == []
