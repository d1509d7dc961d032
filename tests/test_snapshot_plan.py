"""Snapshots of real machines and the plan made from them.

Fixtures (tests/data, made by tests/data/make_fixtures.py): ``snapshot-synthetic.npz``, ten
1 MiB blocks written flag by flag (every class count below is known), and
``snapshot-trimmed.npz``, real memory blocks of the development machine. The central
property: the plan's prediction for a block equals what the engine then measures on the
machine ``run --snapshot`` builds for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hotremove.cli.snapshot import plan_command, snapshot_command
from hotremove.kernels import get_kernel
from hotremove.plugins import load_plugins
from hotremove.realmachine import kpageflags as kpfmod
from hotremove.realmachine import snapshot as snapmod
from hotremove.realmachine import synthesize as snapmach
from hotremove.realmachine.classes import CLASS_NAMES, classify, unit_name
from hotremove.realmachine.kpageflags import (
    KPF_ANON,
    KPF_BUDDY,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_LRU,
    KPF_MAPPEDTODISK,
    KPF_MLOCKED,
    KPF_NOPAGE,
    KPF_PRIVATE,
    KPF_RESERVED,
    KPF_SWAPBACKED,
    KPF_THP,
    KPF_UPTODATE,
    kpf,
)
from hotremove.realmachine.plan import BlockPlan, Plan, plan, resolve_fs
from hotremove.realmachine.run import run_snapshot
from hotremove.realmachine.snapshot import (
    BlockInfo,
    Snapshot,
    SnapshotError,
    load,
    take,
)
from hotremove.realmachine.synthesize import FsSpec

from .conftest import damaged_copies

DATA = Path(__file__).parent / "data"
SYNTHETIC = DATA / "snapshot-synthetic.npz"
TRIMMED = DATA / "snapshot-trimmed.npz"
LIVE_READABLE = os.access("/proc/kpageflags", os.R_OK) and os.access("/proc/kpagecount", os.R_OK)

#: What the plan must find in every synthetic block (see make_fixtures.synthetic()).
SYNTHETIC_CLASSES = {
    0: {"free": 128, "flagless": 896},
    1: {
        "file_buffers": 16,
        "file_clean_nobh": 8,
        "file_dirty": 16,
        "writeback": 6,
        "anon": 20,
        "mlocked": 4,
        "huge": 8,
        "free": 946,
    },
    2: {"huge": 528, "file_buffers": 1, "free": 495},
    3: {"file_buffers": 8, "slab": 2, "pgtable": 1, "free": 1013},
    4: {"reserved": 1, "unmovable": 5, "free": 1018},
    5: {"free": 512, "hole": 512},
    6: {"hole": 1024},
    7: {"free": 1024},
    8: {"hwpoison": 1, "offline": 1, "free": 1022},
    9: {"file_buffers": 96, "anon": 64, "free": 864},
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.fixture(scope="module")
def synthetic() -> Snapshot:
    return load(SYNTHETIC)


@pytest.fixture(scope="module")
def ext2_plan(synthetic: Snapshot, plugins) -> Plan:
    return plan(synthetic, plugins.hooks)


# --------------------------------------------------------------------------- snapshot files


def test_kpf_bit_numbers_are_the_kernels_including_the_ones_above_31() -> None:
    assert (kpfmod.KPF_BUDDY, kpfmod.KPF_NOPAGE, kpfmod.KPF_PGTABLE) == (10, 20, 26)
    assert (KPF_RESERVED, KPF_MLOCKED, KPF_MAPPEDTODISK, KPF_PRIVATE) == (32, 33, 34, 35)
    assert kpfmod.kpf_names(kpf(KPF_LRU, KPF_PRIVATE)) == ["lru", "private"]


def _fake_machine(root: Path, nr_entries: int) -> tuple[Path, Path]:
    """A /proc and /sys with 4-page memory blocks 0 and 2 (block 1 absent) and a kpageflags
    that ends after ``nr_entries`` pfns."""
    proc, sysfs = root / "proc", root / "sys"
    memdir = sysfs / "devices" / "system" / "memory"
    for index in (0, 2):
        d = memdir / f"memory{index}"
        (d / "node0").mkdir(parents=True)
        (d / "state").write_text("online\n")
        (d / "valid_zones").write_text("Normal\n")
        (d / "removable").write_text("1\n")
    (memdir / "block_size_bytes").write_text("4000\n")
    proc.mkdir()
    flags = np.arange(nr_entries, dtype="<u8") | np.uint64(kpf(KPF_PRIVATE))  # pfn in low bits
    (proc / "kpageflags").write_bytes(flags.tobytes())
    (proc / "kpagecount").write_bytes(np.full(nr_entries, 3, dtype="<u8").tobytes())
    (proc / "mounts").write_text(
        "proc /proc proc rw 0 0\n/dev/vda / ext3 rw,relatime,data=journal 0 0\n"
        "/dev/my\\040disk /mnt/a\\040b ext2 ro 0 0\n"
    )
    (proc / "meminfo").write_text("MemTotal:  64 kB\nMemFree:  32 kB\n")
    return proc, sysfs


def test_take_reads_aligned_bounded_chunks_and_marks_pfns_past_the_end_as_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, sysfs = _fake_machine(tmp_path, nr_entries=10)
    reads: list[tuple[int, int]] = []
    real = os.preadv

    def spy(fd: int, buffers: list[memoryview], offset: int) -> int:
        reads.append((offset, sum(len(b) for b in buffers)))
        return real(fd, buffers, offset)

    monkeypatch.setattr(snapmod, "CHUNK_ENTRIES", 3)
    monkeypatch.setattr(snapmod.os, "preadv", spy)
    snap = take(proc, sysfs)
    assert [b.index for b in snap.blocks] == [0, 2]
    assert snap.block_size == 16384 and snap.flags.shape == (2, 4)
    assert all(offset % 8 == 0 and 0 < size <= 24 and size % 8 == 0 for offset, size in reads)
    low = snap.flags & np.uint64(0xFF)
    assert low[0].tolist() == [0, 1, 2, 3]
    assert low[1, :2].tolist() == [8, 9]  # pfns 8 and 9 exist ...
    assert (snap.flags[1, 2:] == kpf(KPF_NOPAGE)).all()  # ... 10 and 11 lie past max_pfn
    assert snap.counts[0].tolist() == [3, 3, 3, 3] and snap.counts[1, 2:].tolist() == [0, 0]
    assert snap.root is not None and snap.root.fstype == "ext3"
    assert snap.root.options == ("rw", "relatime", "data=journal")
    assert snap.mounts[-1].mountpoint == "/mnt/a b"
    assert snap.blocks[1] == BlockInfo(2, "online", "Normal", True, 0)
    assert snap.meminfo == {"MemTotal": 16, "MemFree": 8}


def test_snapshot_file_round_trip_keeps_every_flag_and_narrows_counts(
    synthetic: Snapshot, tmp_path: Path
) -> None:
    path = synthetic.save(tmp_path / "s.npz")
    again = load(path)
    assert np.array_equal(again.flags, synthetic.flags)
    assert np.array_equal(again.counts, synthetic.counts)
    assert again.counts.dtype == np.uint8
    assert again.blocks == synthetic.blocks and again.mounts == synthetic.mounts
    assert (again.kernel, again.source) == ("synthetic", "synthetic")
    assert again.meminfo == synthetic.meminfo == {"MemTotal": 10240, "MemFree": 9000}
    trimmed = again.trimmed([9, 1])
    assert [b.index for b in trimmed.blocks] == [9, 1] and trimmed.source == "trimmed"
    assert np.array_equal(trimmed.flags[1], synthetic.flags[1])


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such snapshot file"), (b"not a zip", "not a hotremove snapshot")],
)
def test_a_bad_snapshot_file_is_one_error_line(tmp_path: Path, content, message) -> None:
    path = tmp_path / "bad.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SnapshotError, match=message) as err:
        load(path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- classification


def test_synthetic_frames_fall_into_the_classes_they_were_written_as(synthetic: Snapshot) -> None:
    counts = classify(synthetic).class_counts()
    found = {
        b.index: {CLASS_NAMES[c]: int(n) for c, n in enumerate(counts[row]) if n}
        for row, b in enumerate(synthetic.blocks)
    }
    assert found == SYNTHETIC_CLASSES


def test_anonymous_folios_are_built_as_folios_and_page_cache_folios_as_pages(
    synthetic: Snapshot,
) -> None:
    lay = classify(synthetic).layout
    heads = np.flatnonzero(lay.order[2])
    assert heads.tolist() == [512] and lay.order[2, 512] == 9
    assert (lay.kind[2, 513:1024] == snapmach.K_TAIL).all()
    assert (lay.kind[2, 16:32] == snapmach.K_ANON).all()  # mTHP: base pages
    assert (lay.kind[1, 68:76] == snapmach.K_FILE_BH).all() and not lay.order[1].any()


# --------------------------------------------------------------------------- plan


def test_plan_ranks_cheapest_first_and_names_every_blocker(ext2_plan: Plan) -> None:
    order = [b.index for b in ext2_plan.blocks]
    assert order[:4] == [0, 9, 1, 2]  # nothing to move, then by simulated time
    reasons = {b.index: b.reasons for b in ext2_plan.blocks if not b.offlinable}
    assert reasons == {
        3: ["unmovable: 2 slab, 1 pgtable (-EBUSY)"],
        4: ["unmovable: 5 unmovable, 1 reserved (-EBUSY)"],
        5: ["memory holes: 512 pages without memmap (-EINVAL)"],
        6: ["block is offline"],
        7: ["mixed zones (valid_zones none): -EINVAL"],
        8: ["unmovable: 1 hwpoison, 1 offline (-EBUSY)"],
    }
    assert [b.rank for b in ext2_plan.blocks] == list(range(1, 11))


def test_the_plugins_decide_rebinding_versus_writeback(synthetic: Snapshot, plugins) -> None:
    ext2 = plan(synthetic, plugins.hooks, fs=FsSpec("ext2"))
    rebinding4 = plan(synthetic, plugins.hooks, fs=FsSpec("ext4"))
    # forced writeback on Linux 6.12, whose fallback still writes (7.2's refuses: below)
    ext4 = plan(
        synthetic, plugins.hooks, fs=FsSpec("ext4"), policy="writeback", kernel=get_kernel("6.12")
    )
    assert (ext2.strategy, ext2.plugin, ext2.rebinds) == ("buffer_migrate_folio", "ext2", True)
    assert (rebinding4.strategy, rebinding4.plugin) == ("buffer_migrate_folio", "ext4")
    assert (ext4.strategy, ext4.plugin, ext4.rebinds) == (
        "fallback_migrate_folio",
        "generic_writeback",
        False,
    )
    b2, b4 = ext2.block(1), ext4.block(1)
    # ext2: every page with buffers is rebound (16 clean, 12 dirty, 4 under writeback, 8 of
    # a large folio), nothing is written; forced to fall back, the 16 dirty pages are written.
    assert (b2.rebound, b2.written_back, b2.write_requests) == (40, 0, 0)
    assert (b4.rebound, b4.written_back, b4.write_requests) == (0, 16, 16)
    assert b4.simulated_seconds > b2.simulated_seconds
    assert b2.moved_pages == b4.moved_pages == 78
    # Linux 7.2: the fallback writes nothing (7ee3647243e5), so the dirty pages cannot go
    ebusy = plan(synthetic, plugins.hooks, fs=FsSpec("ext4"), policy="writeback").block(1)
    assert ebusy.written_back == 0 and not ebusy.offlinable


def test_flagless_pages_block_when_counted_as_kernel_memory(synthetic: Snapshot, plugins) -> None:
    p = plan(synthetic, plugins.hooks, flagless="unmovable")
    assert p.block(0).reasons == ["unmovable: 896 flagless (-EBUSY)"]


def _blocks_of(kinds: list[np.ndarray], ppb: int) -> Snapshot:
    flags = np.stack(kinds).astype(np.uint64)
    return Snapshot(
        block_size=ppb * 4096,
        blocks=[BlockInfo(i, "online", "Movable") for i in range(len(kinds))],
        flags=flags,
        counts=np.zeros_like(flags, dtype=np.uint8),
    )


def test_no_room_elsewhere_is_enomem(plugins) -> None:
    anon = kpf(KPF_UPTODATE, KPF_LRU, KPF_ANON, KPF_SWAPBACKED)
    buddy = kpf(KPF_BUDDY)
    thp = np.full(1024, buddy)
    thp[:512] = anon | kpf(KPF_THP, KPF_COMPOUND_TAIL)  # one 2 MiB anonymous folio
    thp[0] = anon | kpf(KPF_THP, KPF_COMPOUND_HEAD)
    fragmented = np.where(np.arange(1024) % 2, anon, buddy)  # 512 free, no free 2 MiB
    p = plan(_blocks_of([thp, fragmented], 1024), plugins.hooks, fs=FsSpec("ext2"))
    assert p.block(0).reasons == ["-ENOMEM: 1 folios of 2048 KiB, 0 free aligned ranges elsewhere"]
    assert p.block(1).offlinable  # its 512 pages fit in the other block's free half
    full, half = np.full(64, anon), np.where(np.arange(64) < 40, anon, buddy)
    tight = plan(_blocks_of([full, full, half], 64), plugins.hooks, fs=FsSpec("ext2"))
    assert tight.block(2).reasons == ["-ENOMEM: 40 pages to move, 0 free elsewhere"]
    assert tight.block(0).reasons == ["-ENOMEM: 64 pages to move, 24 free elsewhere"]


# --------------------------------------------------------------------------- plan == run


def _assert_prediction_is_measured(b: BlockPlan, report, exact_io: bool = True) -> None:
    off = report.offline
    measured = {
        "offlined": off.offlined,
        "migrated": off.migrated,
        "rebound": off.rebound,
        "written_back": off.written_back,
        "failed": len(off.failed),
    }
    assert {k: b.predicted()[k] for k in measured} == measured
    assert report.verify is not None and report.verify.ok, report.verify
    assert not off.check_failures and not report.lock_violations
    if exact_io:
        assert report.writeback_ios == b.write_requests
        assert report.journal_ios == b.journal_requests
        assert report.simulated_seconds == pytest.approx(b.simulated_seconds, rel=1e-9, abs=1e-12)
    else:  # jbd2 commits and checkpoints many pages at once: the plan's I/O is a bound
        assert report.writeback_ios <= b.write_requests
        assert report.journal_ios <= b.journal_requests
        assert report.simulated_seconds <= b.simulated_seconds * (1 + 1e-9)


@pytest.mark.parametrize(
    ("block", "fs", "options"),
    [
        (1, "ext2", None),
        (1, "ext3", None),
        (1, "ext4", None),
        (1, "ext3", "data=journal"),
        (2, "ext2", None),
        (3, "ext2", None),
        (9, "ext4", None),
    ],
)
def test_plan_prediction_is_what_run_snapshot_measures(
    synthetic: Snapshot, plugins, block: int, fs: str, options: str | None
) -> None:
    spec = resolve_fs(synthetic, fs, options)
    b = plan(synthetic, plugins.hooks, fs=spec).block(block)
    report = run_snapshot(synthetic, [block], plugins=plugins, fs=spec)
    _assert_prediction_is_measured(b, report, exact_io=options is None)


def test_plan_prediction_holds_on_a_real_block(plugins) -> None:
    real = load(TRIMMED)
    p = plan(real, plugins.hooks)  # the real root filesystem: ext4 → writeback fallback
    b = p.block(73)
    assert b.offlinable and b.moved_pages > 500 and "huge" in b.classes
    report = run_snapshot(real, [73], plugins=plugins)
    _assert_prediction_is_measured(b, report)
    assert report.offline.blocks == [73], "the report numbers blocks as the snapshot does"
    assert not p.block(32).offlinable and "slab" in p.block(32).blockers
    assert p.block(0).reasons[0].startswith("mixed zones")
    assert p.block(100).classes == {"flagless": 32768} and p.block(100).offlinable


# --------------------------------------------------------------------------- commands


def test_plan_command_prints_a_ranked_table_json_and_a_picture(tmp_path: Path) -> None:
    runner = CliRunner()
    png = tmp_path / "plan.png"
    result = runner.invoke(plan_command, [str(SYNTHETIC), "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["fs"]["strategy"] == "buffer_migrate_folio" and out["offlinable"] == 4
    assert [b["block"] for b in out["blocks"]][:4] == [0, 9, 1, 2]
    assert out["blocks"][2]["predicted"]["rebound"] == 40
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = runner.invoke(
        plan_command,
        [str(SYNTHETIC), "--fs", "ext4", "--device", "ide-2004", "--strategy", "writeback"],
    )
    assert table.exit_code == 0, table.output
    assert "fallback_migrate_folio" in table.stdout and "unmovable: 2 slab" in table.stdout
    assert any(unit_name(3) in line for line in table.stdout.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/s.npz"], "no such snapshot file"),
        ([__file__], "not a hotremove snapshot"),
        ([str(SYNTHETIC), "--fs-options", "bogus"], "--fs-options: unknown option 'bogus'"),
        ([str(SYNTHETIC), "--plot", "/nonexistent/dir/p.png"], "--plot: cannot write"),
        ([str(SYNTHETIC), "--strategy", "nope"], "--strategy: unknown strategy 'nope'"),
    ],
)
def test_plan_command_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(plan_command, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hotremove: error: ") and message in lines[0]


def test_snapshot_command_writes_a_file_or_says_in_one_line_why_not(tmp_path: Path) -> None:
    proc, sysfs = _fake_machine(tmp_path, nr_entries=12)
    out = tmp_path / "snap.npz"
    runner = CliRunner()
    args = ["--proc", str(proc), "--sysfs", str(sysfs), "-o", str(out)]
    ok = runner.invoke(snapshot_command, args)
    assert ok.exit_code == 0, ok.output
    assert f"wrote {out}" in ok.stdout and load(out).flags.shape == (2, 4)
    again = runner.invoke(snapshot_command, args)  # never over a file without --force
    assert again.exit_code == 2 and "exists (--force replaces it)" in again.stderr
    (proc / "kpageflags").unlink()
    failed = runner.invoke(snapshot_command, [*args, "--force"])
    assert failed.exit_code == 2
    assert failed.stderr.strip().splitlines() == [
        f"hotremove: error: cannot read {proc}/kpageflags: No such file or directory"
    ]


@pytest.mark.skipif(not LIVE_READABLE, reason="/proc/kpageflags is not readable (not root?)")
def test_live_snapshot_covers_every_memory_block() -> None:
    snap = take()
    present = [n for n in os.listdir("/sys/devices/system/memory") if n.startswith("memory")]
    assert len(snap.blocks) == len(present)
    assert snap.kernel == os.uname().release and snap.root is not None
    part = snap.trimmed([b.index for b in snap.blocks[:8]])
    counts = classify(part).class_counts()
    assert counts.sum() == part.nr_pages and counts[:, 0].sum() > 0  # some free memory


def test_a_damaged_snapshot_is_one_line_never_a_traceback(tmp_path: Path) -> None:
    """Random bit flips, truncations and zeroed ranges of a snapshot file: each load either
    fails with a one-line SnapshotError naming the file, or (a flip in zip slack) loads the
    very same snapshot — never another exception, never different page flags."""
    good = tmp_path / "good.npz"
    original = load(SYNTHETIC)
    original.save(good)
    data = good.read_bytes()
    for trial, (_kind, _at, damaged) in enumerate(damaged_copies(data)):
        path = tmp_path / f"bad{trial}.npz"
        path.write_bytes(damaged)
        try:
            snap = load(path)
        except SnapshotError as exc:
            message = str(exc)
            assert str(path) in message and "\n" not in message
        else:
            assert np.array_equal(snap.flags, original.flags)
            assert np.array_equal(snap.counts, original.counts)
