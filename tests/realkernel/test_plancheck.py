"""``hotremove kernel plan-check`` without booting: the guest's snapshot dump (its own shell
function, run by busybox on a fake /proc and /sys) assembled by ``hotremove snapshot``'s
reader, the results disk, the remedy records, the plan's journal rule and remedies, and the
scoring. The boot test is at the end, under the ``realkernel`` marker."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hotremove.kernels import get_kernel
from hotremove.plugins import load_plugins
from hotremove.realkernel import console, job
from hotremove.realkernel.plancheck import owners, real_class, score
from hotremove.realkernel.report import build_report, placement
from hotremove.realkernel.run import unpack_dump
from hotremove.realmachine.kpageflags import (
    KPF_BUDDY,
    KPF_DIRTY,
    KPF_LRU,
    KPF_PRIVATE,
    KPF_SLAB,
    KPF_UPTODATE,
    kpf,
)
from hotremove.realmachine.plan import plan
from hotremove.realmachine.remedy import advise
from hotremove.realmachine.snapshot import (
    BlockInfo,
    Mount,
    Snapshot,
    SnapshotError,
    from_dump,
    load,
    take,
)
from hotremove.realmachine.synthesize import FsSpec

BUSYBOX = shutil.which("busybox")


def _fake_machine(root: Path, nr_entries: int, ppb: int = 4) -> tuple[Path, Path]:
    """/proc and /sys with ``ppb``-page memory blocks 0 and 2 (1 absent); kpageflags ends
    after ``nr_entries`` pfns (block 2 partly past it)."""
    proc, sysfs = root / "proc", root / "sys"
    memdir = sysfs / "devices" / "system" / "memory"
    for index, zones in ((0, "Normal"), (2, "Movable")):
        d = memdir / f"memory{index}"
        (d / "node0").mkdir(parents=True)
        (d / "state").write_text("online\n")
        (d / "valid_zones").write_text(f"{zones}\n")
        (d / "removable").write_text("1\n")
    (memdir / "block_size_bytes").write_text(f"{ppb * 4096:x}\n")
    proc.mkdir()
    flags = np.arange(nr_entries, dtype="<u8") | np.uint64(kpf(KPF_PRIVATE))
    (proc / "kpageflags").write_bytes(flags.tobytes())
    counts = (np.arange(nr_entries) % 5).astype("<u8")
    (proc / "kpagecount").write_bytes(counts.tobytes())
    (proc / "mounts").write_text(
        "rootfs / rootfs rw 0 0\n/dev/vda /mnt/data ext4 rw,relatime,data=journal 0 0\n"
    )
    (proc / "meminfo").write_text("MemTotal:  64 kB\nMemFree:  32 kB\n")
    ext4 = proc / "fs" / "ext4" / "vdb"  # a data= mode only here: the superblock's default
    ext4.mkdir(parents=True)
    (ext4 / "options").write_text("rw\nbsddf\ndata=journal\nnodelalloc\n")
    (proc / "mounts").write_text(
        (proc / "mounts").read_text() + "/dev/vdb /mnt/b ext4 rw,nodelalloc 0 0\n"
    )
    return proc, sysfs


def _guest_dump(proc: Path, sysfs: Path, dump: Path, ppb: int) -> str:
    """The guest's own ``dump_snapshot`` (job.py), run by busybox on the fake files."""
    head = job.SCRIPT_HEAD.replace("@VMSTAT@", "x").replace("@MEMINFO@", "x")
    env = {**os.environ, "RKPROC": str(proc), "RKSYS": str(sysfs), "RKDUMP": str(dump)}
    out = subprocess.run(
        [str(BUSYBOX), "sh", "-c", f"{head}\nPPB={ppb}\ndump_snapshot"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
@pytest.mark.parametrize("ppb", [4, 16384])
def test_the_guests_dump_assembles_into_the_snapshot_take_makes(tmp_path: Path, ppb: int) -> None:
    nr = 2 * ppb + ppb // 2  # block 2 ends past the end of kpageflags
    proc, sysfs = _fake_machine(tmp_path, nr, ppb)
    out = _guest_dump(proc, sysfs, tmp_path / "dump", ppb)
    assert "RK snapshot_dump blocks=2 " in out
    live, dumped = take(proc, sysfs), from_dump(tmp_path / "dump")
    assert np.array_equal(live.flags, dumped.flags)
    assert np.array_equal(live.counts, dumped.counts) and live.counts.dtype == dumped.counts.dtype
    assert live.blocks == dumped.blocks and live.mounts == dumped.mounts
    assert dumped.mounts[1].options == ("rw", "nodelalloc", "data=journal")  # from /proc/fs
    assert dumped.mounts[0].options == ("rw", "relatime", "data=journal")  # as mounted
    assert live.meminfo == dumped.meminfo == {"MemTotal": 16, "MemFree": 8}
    assert dumped.source == "dump" and dumped.kernel and dumped.taken.endswith("Z")
    assert dumped.blocks[1] == BlockInfo(2, "online", "Movable", True, 0)
    assert (dumped.flags[1, ppb // 2 :] == np.uint64(1 << 20)).all()  # past the end: NOPAGE
    again = load(dumped.save(tmp_path / "snap.npz"))  # the same file format
    assert np.array_equal(again.flags, live.flags) and again.source == "dump"


def test_a_dump_with_a_torn_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no such dump directory"):
        from_dump(tmp_path / "nothing")
    proc, sysfs = _fake_machine(tmp_path / "m", 8)
    dump = tmp_path / "dump"
    shutil.copytree(sysfs / "devices" / "system" / "memory", dump / "memory")
    shutil.copy(proc / "mounts", dump / "mounts")
    (dump / "kpageflags").mkdir()
    (dump / "kpageflags" / "0").write_bytes(b"\0" * 12)
    with pytest.raises(SnapshotError, match="not whole 8-byte entries"):
        from_dump(dump)


def test_the_results_disk_unpacks_into_a_dump(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("./uname", b"6.12.117\n"), ("./kpageflags/32", b"\1" * 16)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    image = tmp_path / "out.img"
    image.write_bytes(buf.getvalue() + b"\0" * (1 << 16))  # the rest of the sparse disk
    unpack_dump(image, tmp_path / "dump", tmp_path / "console.log")
    assert (tmp_path / "dump" / "kpageflags" / "32").read_bytes() == b"\1" * 16


def test_the_job_dumps_offlines_and_retries_after_sync_only_when_asked() -> None:
    plain = job.script(_guest_plan())
    asked = job.script(_guest_plan(dump_snapshot=True, remedies=("sync", "fsfreeze")))
    assert "\nDUMP=\n" in plain and "\nREMEDIES=''\n" in plain
    assert "DUMP=1" in asked and "REMEDIES='sync fsfreeze'" in asked and "devof hrout" in asked
    if BUSYBOX:
        subprocess.run([BUSYBOX, "sh", "-n", "-c", asked], check=True)
    with pytest.raises(ValueError, match="unknown remedy 'reboot'"):
        job.script(_guest_plan(remedies=("reboot",)))


def _guest_plan(**extra) -> job.GuestPlan:
    return job.GuestPlan(
        filesystems=(job.FsPlan("data", "ext4", ("data=journal",), "hrfs0", ("f0",)),),
        writes=(("data", "f0", 0, 3),),
        payload=b"abc",
        remove_blocks=(1, 0),
        dimm_blocks=2,
        offline_timeout=10,
        **extra,
    )


CONSOLE = """\
RK dimm block_size=134217728 blocks=32,33
RK kpf tag=before_offline sim=0 block=32 pages=32768 buddy=30000 used=2119 file=2048 \
file_dirty=418
RK kpf tag=before_offline sim=1 block=33 pages=32768 buddy=32700 used=60 file=0 file_dirty=0
RK vmstat tag=before_offline pgmigrate_success=10 pgmigrate_fail=0 nr_written=5
RK offline sim=1 block=33 rc=0 t0=20.00 t1=20.50 state=offline err=
RK vmstat tag=after_offline_1 pgmigrate_success=70 pgmigrate_fail=0 nr_written=5
RK kpf tag=after_offline_1 sim=0 block=32 pages=32768 buddy=29900 used=2179 file=2048 \
file_dirty=418
RK offline sim=0 block=32 rc=143 t0=21.00 t1=31.00 state=online err=Terminated
RK vmstat tag=after_offline_0 pgmigrate_success=1700 pgmigrate_fail=90000 nr_written=5
RK remedy_done action=sync t0=31.10 t1=31.40
RK vmstat tag=after_remedy_sync pgmigrate_success=1700 pgmigrate_fail=90000 nr_written=429
RK remedy action=sync sim=0 block=32 rc=143 t0=31.50 t1=41.50 state=online err=Terminated
RK vmstat tag=after_remedy_sync_0 pgmigrate_success=1733 pgmigrate_fail=99000 nr_written=429
RK remedy_done action=fsfreeze t0=41.60 t1=41.70
RK vmstat tag=after_remedy_fsfreeze pgmigrate_success=1733 pgmigrate_fail=99000 nr_written=429
RK remedy action=fsfreeze sim=0 block=32 rc=0 t0=41.80 t1=42.80 state=offline err=
RK vmstat tag=after_remedy_fsfreeze_0 pgmigrate_success=2233 pgmigrate_fail=99000 \
nr_written=429
RK end
""".replace("\\\n", "")


def _report() -> dict:
    return _guest_report().as_dict()


def _guest_report():
    return build_report(
        console.parse(CONSOLE),
        scenario="s",
        kernel={"version": "6.12"},
        accel="tcg",
        blocks=[1, 0],
        expected_md5={},
        wall_seconds=60.0,
        not_comparable=[],
    )


def test_the_report_keeps_each_blocks_prior_scan_and_the_second_attempts() -> None:
    real = _report()
    first, second = real["per_block"]
    assert (first["memory_block"], first["offlined"], first["migrated"]) == (33, True, 60)
    assert second["error"] == "EINTR" and second["migrated"] == 1630
    assert second["prior"]["used"] == 2179  # after block 33's pages moved in
    synced, frozen = real["remedies"]
    assert (synced["action"], synced["error"], synced["migrated"]) == ("sync", "EINTR", 33)
    assert (frozen["action"], frozen["offlined"], frozen["migrated"]) == ("fsfreeze", True, 500)
    assert frozen["seconds"] == 1.0 and frozen["written_back"] == 0


def _block(index: int, go: bool, cls: str, migrated: int, written: int, remedy=None) -> dict:
    return {
        "block": index,
        "offlinable": go,
        "reason_class": cls,
        "journal_held": cls == "migration",
        "reasons": [] if go else ["migration fails: 418 file_dirty_bh: busy: jbd2"],
        "remedy": remedy,
        "predicted": {"migrated": migrated, "written_back": written},
    }


def test_score_per_block_accuracy_reasons_counts_and_remedies() -> None:
    freeze = {"action": "fsfreeze", "offlinable": True, "sync_alone": None}
    right = [_block(33, True, "ok", 60, 0), _block(32, False, "migration", 1630, 0, freeze)]
    s = score([*right, _block(0, True, "ok", 0, 0)], _report())
    assert (s["go_right"], s["go_total"], s["accuracy"]) == (2, 2, 1.0)
    assert s["reasons_right"] == 2 and s["counts_right"] == 2
    assert [r["tried"] for r in s["remedies"]] == ["sync", "fsfreeze"]
    assert [r["planned"] for r in s["remedies"]] == ["fsfreeze", "fsfreeze"]
    assert [r["predicted_offlined"] for r in s["remedies"]] == [None, True]  # sync: timing
    assert s["remedies_right"] == 1 and s["remedies_scored"] == 1
    # the guest's own pages in the block are the slack on migrated (60 + 131 other pages)
    wrong = [_block(33, True, "ok", 250, 0), _block(32, True, "ok", 1700, 40)]
    s = score(wrong, _report())
    assert s["accuracy"] == 0.5 and s["reasons_right"] == 1
    assert [r["agree"]["migrated"] for r in s["blocks"]] == [False, True]
    assert not s["blocks"][1]["agree"]["written_back"]
    assert s["remedies"][0]["planned"] == "none (predicted to go)" and s["remedies_right"] == 1
    assert real_class("EBUSY") == "unmovable" and real_class("EIO") == "other"


def test_the_plan_check_table_names_both_calls_and_the_remedies() -> None:
    from rich.console import Console

    from hotremove.realkernel.plancheck import PlanCheck
    from hotremove.realkernel.plancheck_view import render_plan_check

    freeze = {"action": "fsfreeze", "offlinable": True, "sync_alone": None}
    blocks = [_block(33, True, "ok", 60, 0), _block(32, False, "migration", 1630, 0, freeze)]
    check = PlanCheck("s", "6.12", "", {}, _guest_report(), score(blocks, _report()))
    console = Console(width=200, record=True)
    console.print(render_plan_check(check))
    text = console.export_text()
    assert "no: migration (jbd2); remedy fsfreeze" in text and "-EINTR (migration)" in text
    assert "after sync (plan: fsfreeze): depends on timing" in text
    assert "go/no-go right: 2/2 (100%)" in text and "remedies 1/1 (of 2 tried)" in text
    assert check.all_right


def _journal_snapshot() -> Snapshot:
    """Block 0: page cache (100 clean with buffers, 40 dirty with buffers); block 1: free;
    block 2: slab; block 3: clean page cache only. The mount: ext4 data=journal."""
    ppb = 256
    buddy = kpf(KPF_BUDDY)
    page = kpf(KPF_UPTODATE, KPF_LRU, KPF_PRIVATE)
    cache = np.full(ppb, buddy, dtype=np.uint64)
    cache[:100] = page
    cache[100:140] = page | kpf(KPF_DIRTY)
    slab = np.full(ppb, buddy, dtype=np.uint64)
    slab[:3] = kpf(KPF_SLAB)
    clean = np.full(ppb, buddy, dtype=np.uint64)
    clean[:50] = page
    flags = np.stack([cache, np.full(ppb, buddy, dtype=np.uint64), slab, clean])
    return Snapshot(
        block_size=ppb * 4096,
        blocks=[BlockInfo(i, "online", "Movable") for i in range(4)],
        flags=flags,
        counts=np.zeros_like(flags, dtype=np.uint8),
        mounts=[Mount("/dev/vda", "/mnt/data", "ext4", ("rw", "data=journal"))],
    )


def test_612_data_journal_dirty_page_cache_cannot_go_and_fsfreeze_is_the_remedy() -> None:
    hooks = load_plugins().hooks
    snap = _journal_snapshot()
    new = advise(plan(snap, hooks, kernel=get_kernel("6.12")), hooks)
    assert new.fs.data_mode == "journal"  # the only block device mounted (ramfs root)
    b = new.block(0)
    assert not b.offlinable and b.reason_class == "migration" and b.journal_held
    assert "40 file_dirty_bh: busy: buffer held by jbd2" in b.reasons[0]
    assert b.remedy is not None and b.remedy["action"] == "fsfreeze" and b.remedy["offlinable"]
    assert b.remedy["mounts"] == ["/mnt/data"] and b.remedy["sync_alone"] is None
    assert b.remedy["written_back"] == 0
    assert new.block(1).offlinable and new.block(1).remedy is None
    assert new.block(2).reason_class == "unmovable" and new.block(2).remedy["action"] == "nothing"
    warned = new.block(3)  # clean pages with buffers: may be journal-held, the flags cannot say
    assert warned.offlinable and "journal-held" in warned.warnings[0]
    assert warned.remedy["action"] == "fsfreeze"  # a precaution
    assert new.as_dict()["blocks"][0]["reason_class"] in {"ok", "migration", "unmovable"}
    old = advise(
        plan(snap, hooks, kernel=get_kernel("6.1")), hooks
    )  # no migrate_folio: written, then moved
    assert old.block(0).offlinable and old.block(0).written_back == 40
    assert not old.block(3).warnings
    held = plan(snap, hooks, kernel=get_kernel("6.12"), journal_clean="held")
    assert not held.block(3).offlinable and held.block(3).reason_class == "migration"
    assert "clean: assumed written since the last checkpoint" in held.block(3).reasons[0]
    assert plan(snap, hooks, kernel=get_kernel("6.1"), journal_clean="held").block(3).offlinable
    ordered = plan(snap, hooks, fs=FsSpec("ext4", ("data=ordered",)), kernel=get_kernel("6.12"))
    assert ordered.block(0).offlinable and ordered.block(0).written_back == 0


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "realkernel"


@pytest.mark.realkernel
def test_plan_check_on_612_calls_every_dimm_block_right(tmp_path: Path) -> None:
    """One boot (about 70 s under TCG): the journal-held block is called no-go for the
    journal's reason, the free blocks go, and the counts are within ``kernel diff``'s
    tolerances."""
    from hotremove.realkernel.plancheck import plan_check
    from hotremove.scenario import load as load_scenario

    check = plan_check(
        load_scenario(EXAMPLES / "ext4-journal-small.toml"),
        "6.12",
        workdir=tmp_path,
        offline_seconds=10,
    )
    r = check.result
    assert (r["go_right"], r["go_total"], r["accuracy"]) == (4, 4, 1.0), r["blocks"]
    assert r["reasons_right"] == 4 and r["counts_right"] == 4
    first = check.real.dimm_blocks[0]
    held = next(row for row in r["blocks"] if row["block"] == first)
    assert held["predicted"]["journal_held"] and held["predicted"]["remedy"] == "fsfreeze"
    assert held["real"]["error"] == "EINTR" and held["real"]["written_back"] == 0
    # sync (it may be enough: timing), then fsfreeze (jbd2_journal_flush): the block goes
    tried = [rem for rem in r["remedies"] if rem["block"] == first]
    assert tried and tried[-1]["real_offlined"], tried
    assert all(rem["agree"] is not False for rem in tried)
    assert check.all_right
    assert load(check.snapshot_path).source == "dump"  # the same file format


STAGED = """\
RK stage fs=journal block=32 sim=0 free=30566 t0=6.0 t1=10.8
RK kpf tag=stage_journal sim=0 block=32 used=2125 file=2048 file_dirty=0
RK stage fs=dirty block=33 sim=1 free=30319 t0=15.6 t1=20.9
RK kpf tag=stage_dirty sim=0 block=32 used=32740 file=2050 file_dirty=418
RK kpf tag=stage_dirty sim=1 block=33 used=2341 file=2046 file_dirty=417
RK stage fs=clean block=34 sim=2 free=30289 t0=28.9 t1=35.1
RK kpf tag=stage_clean sim=0 block=32 used=32765 file=2050 file_dirty=418
RK kpf tag=stage_clean sim=1 block=33 used=32740 file=2051 file_dirty=417
RK kpf tag=stage_clean sim=2 block=34 used=2324 file=2043 file_dirty=0
"""


def test_a_staged_guest_says_which_block_holds_each_filesystems_page_cache() -> None:
    stages = placement(console.parse(STAGED))
    assert [(st["fs"], st["block"], st["in_block"], st["elsewhere"]) for st in stages] == [
        ("journal", 32, 2048, 0),
        ("dirty", 33, 2046, 2),
        ("clean", 34, 2043, 5),
    ]
    assert owners(stages, ["journal", "dirty", "clean"]) == {32: 0, 33: 1, 34: 2}
    assert placement(console.parse(CONSOLE)) == []  # not staged


def test_page_cache_moved_in_from_blocks_offlined_earlier_is_added_to_the_plan() -> None:
    real = _report()
    real["per_block"][1]["prior"] = {"used": 3179, "file": 3048}  # 1,000 moved in
    real["per_block"][1]["migrated"] = 2630
    right = [_block(33, True, "ok", 60, 0), _block(32, False, "migration", 1630, 0)]
    s = score(right, real)
    assert s["blocks"][1]["real"]["arrived"] == 1000 and s["blocks"][1]["agree"]["migrated"]
    real["per_block"][1]["prior"] = {}  # the same count, nothing seen moving in: too many
    assert not score(right, real)["blocks"][1]["agree"]["migrated"]


def test_the_staged_job_checks_its_settings_and_is_valid_shell() -> None:
    staged = job.script(_guest_plan(staged=True, synced=("data",)))
    assert "STAGED=1" in staged and "SYNCFS=data" in staged
    if BUSYBOX:
        subprocess.run([BUSYBOX, "sh", "-n", "-c", staged], check=True)
    with pytest.raises(ValueError, match="no filesystem 'other' to sync"):
        job.script(_guest_plan(synced=("other",)))
    two = job.FsPlan("more", "ext2", (), "hrfs1", ("f1",))
    many = job.GuestPlan(
        filesystems=(*_guest_plan().filesystems, two, two),
        writes=(),
        payload=b"",
        remove_blocks=(0,),
        dimm_blocks=2,
        offline_timeout=5,
        staged=True,
    )
    with pytest.raises(ValueError, match="3 filesystems, one DIMM block each"):
        job.script(many)


def test_the_plan_check_picture_has_the_plan_above_the_kernel(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from hotremove.realkernel.plancheck import PlanCheck
    from hotremove.realkernel.plancheck_view import plot_plan_check

    freeze = {"action": "fsfreeze", "offlinable": True, "sync_alone": None}
    blocks = [_block(33, True, "ok", 60, 0), _block(32, False, "migration", 1630, 0, freeze)]
    plan_dict = {"blocks": [{**b, "classes": {"file_dirty": 418}, "fs": "data"} for b in blocks]}
    check = PlanCheck("s", "6.12", "", plan_dict, _guest_report(), score(blocks, _report()))
    out = plot_plan_check(check, tmp_path / "check.png")
    height, width = imread(out).shape[:2]
    assert width > 400 and height > 300  # two blocks, plan + kernel + two remedies' rows


@pytest.mark.realkernel
def test_plan_check_four_states_in_one_boot_on_612(tmp_path: Path) -> None:
    """One boot (about 75 s under TCG): ext4 data=journal, dirty ext2, clean ext2 and nothing,
    one DIMM block each; the plan, made on the guest's snapshot with each block's filesystem,
    calls every block and its reason right, the counts are within tolerance, and the remedy it
    proposes (fsfreeze for the journal-held block) offlines it."""
    from hotremove.realkernel.plancheck import plan_check
    from hotremove.scenario import load as load_scenario

    check = plan_check(
        load_scenario(EXAMPLES / "four-states.toml"),
        "6.12",
        workdir=tmp_path,
        offline_seconds=5,
        synced=("clean",),
        remedies=("fsfreeze",),
    )
    dimm = check.real.dimm_blocks
    stages = check.real.stages
    assert [(st["fs"], st["block"]) for st in stages] == list(
        zip(["journal", "dirty", "clean"], dimm, strict=False)
    )
    # each filesystem's 2,048 pages in its block (measured: all of them, the staging pinned to
    # one CPU; 0–41 elsewhere before it was)
    assert all(st["in_block"] >= 2000 and st["elsewhere"] <= 40 for st in stages), stages
    classes = {b["block"]: b["classes"] for b in check.plan["blocks"]}
    journal, dirty, clean, empty = (classes[b] for b in dimm)
    assert journal.get("file_dirty", 0) >= 400 and dirty.get("file_dirty", 0) >= 400
    assert clean.get("file_dirty", 0) == 0 and clean.get("file_buffers", 0) >= 400
    assert not any(k.startswith("file") for k in empty)
    r = check.result
    assert (r["go_right"], r["go_total"]) == (4, 4), r["blocks"]
    assert r["reasons_right"] == 4 and r["counts_right"] == 4, r["blocks"]
    rows = {row["block"]: row for row in r["blocks"]}
    held = rows[dimm[0]]
    assert held["predicted"]["journal_held"] and held["predicted"]["remedy"] == "fsfreeze"
    assert held["real"]["error"] == "EINTR" and held["real"]["written_back"] == 0
    assert all(rows[b]["real"]["offlined"] for b in dimm[1:])
    (frozen,) = r["remedies"]
    assert frozen["tried"] == frozen["planned"] == "fsfreeze" and frozen["agree"] is True
    assert frozen["real_offlined"]
    assert check.real.verify["ok"] and check.all_right


def test_plan_check_refuses_an_unknown_filesystem_to_sync_before_booting() -> None:
    from click.testing import CliRunner

    from hotremove.cli import cli

    four = str(EXAMPLES / "four-states.toml")
    for args, message in (
        (["--sync-fs", "nope"], "--sync-fs: no filesystem 'nope' in the scenario (it has: "),
        (["--plot", "/no/such/dir/x.png"], "--plot: cannot write /no/such/dir/x.png"),
    ):
        result = CliRunner().invoke(cli, ["kernel", "plan-check", four, "--kernel", "6.1", *args])
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
