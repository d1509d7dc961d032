"""Hostile input: every scenario either runs or fails with one line naming the key; damaged
images fail verification instead of crashing; nothing writes to /proc or /sys."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hotremove.errors import HotremoveError, ScenarioError
from hotremove.scenario import loads, validate
from hotremove.sim.runner import run_scenario

from .conftest import hotremove, invoke, spawn

SOURCE = Path(__file__).resolve().parents[1]

toml_text = st.text(
    alphabet=st.sampled_from(list('[]="., \n0123456789abcdefghijklmnopqrstuvwxyzMiBGK_-')),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(toml_text)
def test_arbitrary_text_is_a_scenario_or_one_line_error(text):
    try:
        loads(text)
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(exc)


keys = st.sampled_from(
    [
        "memory",
        "filesystem",
        "workload",
        "remove",
        "device",
        "faults",
        "size",
        "block_size",
        "blocks",
        "dirty",
        "files",
        "type",
        "bogus",
    ]
)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_arbitrary_structures_validate_or_name_the_key(data):
    try:
        validate(data)
    except ScenarioError as exc:
        message = str(exc)
        assert "\n" not in message
        assert re.match(r"^[\w\[\]\.]+: |^[\w ]", message), message


MiB = 1 << 20
small_extreme = st.fixed_dictionaries(
    {
        "memory": st.fixed_dictionaries(
            {
                "size": st.sampled_from([8 * MiB, 16 * MiB, 32 * MiB]),
                "block_size": st.sampled_from([4 * MiB, 8 * MiB]),
            }
        ),
        "filesystem": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["a", "b", "c"]),
                    "type": st.sampled_from(["ext2", "ext3", "ext4"]),
                    "block_size": st.sampled_from([1024, 2048, 4096]),
                    "size": st.sampled_from([MiB, 2 * MiB, 4 * MiB]),
                    "files": st.integers(0, 40),
                    "file_size": st.sampled_from([0, 1, 4095, 4096, 65536]),
                }
            ),
            max_size=2,
            unique_by=lambda fs: fs["name"],
        ),
        "workload": st.fixed_dictionaries(
            {
                "dirty": st.sampled_from([0.0, 1.0, 0.5]),
                "cached": st.sampled_from([0.0, 1.0]),
                "anon": st.sampled_from([0, 4096, MiB]),
                "unmovable": st.integers(0, 3),
                "placement": st.sampled_from(["spread", "fill"]),
            }
        ),
        "remove": st.fixed_dictionaries(
            {
                "blocks": st.lists(st.integers(0, 3), min_size=1, max_size=2),
                "mode": st.sampled_from(["async", "sync_light", "sync"]),
            }
        ),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_extreme)
def test_extreme_but_structurally_valid_scenarios_run_or_exit_cleanly(data):
    """Zero-size files, a region of almost all blocks, 0 or 1 dirty share, more files than
    fit, unmovable pages: either a verified report or a one-line HotremoveError."""
    try:
        scenario = validate(data)
    except ScenarioError as exc:
        assert "\n" not in str(exc)
        event(f"rejected: {str(exc).split(':')[0]}")
        return
    try:
        report = run_scenario(scenario)
    except HotremoveError as exc:
        assert "\n" not in str(exc)
        event(f"exit 2: {type(exc).__name__}")
        return
    event("ran: offlined" if report.offline.offlined else "ran: rolled back")
    assert report.verify is not None and report.verify.ok, report.verify.as_dict()
    assert not report.offline.check_failures
    if not report.offline.offlined:
        assert report.offline.reason


def test_huge_counts_are_refused_before_any_work():
    for text, key in [
        ('[memory]\nsize = "1TiB"\nblock_size = "1GiB"', "memory.size"),
        ('[[filesystem]]\nname = "a"\nfiles = 10000000', "filesystem[0].files"),
        ("[workload]\nthp = 100000", "workload.thp"),
        ('[[filesystem]]\nname = "a"\nsize = "100TiB"', "filesystem[0].size"),
    ]:
        try:
            loads(text)
        except ScenarioError as exc:
            assert str(exc).startswith(key), str(exc)
        else:
            raise AssertionError(f"{key} accepted")


def test_damaged_image_fails_verification_without_crashing(hotremove_build, hotremove_verify):
    from hotremove.testing import small_scenario

    built = hotremove_build(small_scenario({"type": "ext2"}))
    image = built.images["fs0"]
    with open(image, "r+b") as f:
        f.seek(1024)  # the superblock
        f.write(b"\0" * 1024)
    verdict = hotremove_verify(built)
    assert not verdict.ok
    assert not verdict.fsck["fs0"]["ok"]
    assert verdict.mismatches and "error" in verdict.mismatches[0]


def test_truncated_image_is_a_one_line_error(tmp_path):
    from hotremove.errors import ImageError
    from hotremove.fs.fstype import ProbeConfig
    from hotremove.fs.registry import known

    ext2 = known("ext2")
    cfg = ProbeConfig(name="x", type="ext2", block_size=1024, size=4 * MiB)
    image = tmp_path / "x.img"
    ext2.make_image(image, cfg, {"f": b"x" * 50000})
    with open(image, "r+b") as f:
        f.truncate(20000)
    try:
        ext2.map_files(image, cfg, ["f"])
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        raise AssertionError("a truncated image must not load")


WRITE_PATTERNS = [
    re.compile(r"open\([^)]*[\"'](/proc|/sys)[^\"']*[\"'][^)]*[\"'][wa+]"),
    re.compile(r"(/proc|/sys)[^\"']*[\"']\)?\.write_(text|bytes)"),
    re.compile(r"echo [^|]*> */(proc|sys)/"),
]


#: the one write allowed: the benchmark resets its own process's peak-RSS counter
OWN_PROCESS = ('open("/proc/self/clear_refs"',)


def test_nothing_in_the_package_writes_to_proc_or_sys():
    offenders = []
    for path in (SOURCE / "core" / "src").rglob("*.py"):
        text = path.read_text()
        for pattern in WRITE_PATTERNS:
            offenders += [f"{path}: {m.group(0)}" for m in pattern.finditer(text)]
        if "/sys/" in text or "/proc/" in text:
            for line in text.splitlines():
                if ("/sys/" in line or "/proc/" in line) and re.search(
                    r"\b(os\.write|pwrite|\.write\(|O_WRONLY|O_RDWR)", line
                ):
                    offenders.append(f"{path}: {line.strip()}")
    assert [o for o in offenders if not any(allowed in o for allowed in OWN_PROCESS)] == []


# --------------------------------------------------------------------------- issue 27, part A
# Each case the hostile trial of issue 27 found, as a regression test: run as the user ran it
# (a subprocess where the exit status, stderr and the process itself are the point).


DATA = Path(__file__).parent / "data"
SYNTHETIC = DATA / "snapshot-synthetic.npz"
SMALL = """
[memory]
size = "32MiB"
block_size = "8MiB"

[[filesystem]]
name = "fs"
size = "4MiB"
files = 16
file_size = "32KiB"
"""
HUGE_DIGITS = "9" * 400
GRID_BASE = '[base.memory]\nsize = "32MiB"\nblock_size = "8MiB"\n[[base.filesystem]]\nname = "a"\n'


def one_line(proc: subprocess.CompletedProcess[str], status: int = 2, *words: str) -> str:
    """The contract for bad input: ``status``, one line on stderr, never a traceback."""
    assert proc.returncode == status, (proc.returncode, proc.stderr[-800:])
    assert "Traceback" not in proc.stderr, proc.stderr[-800:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hotremove: "), proc.stderr[-800:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def image_cache(tmp_path: Path) -> dict[str, str]:
    """A cache of this test's own (the machine's is shared)."""
    return {"HOTREMOVE_CACHE": str(tmp_path / "cache")}


# -- nothing destroyed ---------------------------------------------------------------------------
def test_snapshot_output_that_is_a_device_or_a_fifo_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path(os.devnull), tmp_path):
        before = os.stat(target)
        word = "directory" if target == tmp_path else "not a regular file"
        one_line(invoke("snapshot", "-o", target), 2, "--output", word)
        after = os.stat(target)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
        assert after.st_ino == before.st_ino


def test_an_existing_snapshot_file_is_replaced_only_with_force(tmp_path):
    kept = tmp_path / "kept.npz"
    kept.write_bytes(b"precious")
    one_line(invoke("snapshot", "-o", kept), 2, "exists (--force replaces it)")
    assert kept.read_bytes() == b"precious"


def test_keep_images_into_a_directory_that_holds_files_is_refused_without_force(tmp_path, small):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "fs.img").write_bytes(b"someone's image")
    one_line(invoke("run", small, "--keep-images", keep), 2, "--keep-images", "not empty")
    assert (keep / "fs.img").read_bytes() == b"someone's image"


def test_keep_images_never_writes_over_a_fifo_or_a_symlink_even_with_force(
    tmp_path, small, image_cache
):
    keep = tmp_path / "keep"
    keep.mkdir()
    os.mkfifo(keep / "fs.img")
    args = ("run", small, "--keep-images", keep, "--force")
    one_line(invoke(*args, env=image_cache), 2, "fs.img", "not a regular file")
    assert stat.S_ISFIFO(os.lstat(keep / "fs.img").st_mode)
    (keep / "fs.img").unlink()
    target = tmp_path / "existing.txt"
    target.write_text("hello\n")
    (keep / "fs.img").symlink_to(target)
    one_line(invoke(*args, env=image_cache), 2, "fs.img", "not a regular file")
    assert target.read_text() == "hello\n"


def test_plan_with_a_filesystem_type_no_plugin_registers_is_refused():
    one_line(invoke("plan", SYNTHETIC, "--fs", "ntfs"), 2, "--fs", "'ntfs'", "installed:", "ext2")


def test_plot_paths_must_be_png_and_are_written_exactly_there(tmp_path):
    one_line(invoke("plan", SYNTHETIC, "--fs", "ext2", "--plot", tmp_path / "noext"), 2, ".png")
    assert list(tmp_path.iterdir()) == []
    figure = tmp_path / "blocks.png"
    proc = invoke("plan", SYNTHETIC, "--fs", "ext2", "--plot", figure)
    assert proc.returncode == 0, proc.stderr
    assert figure.read_bytes().startswith(b"\x89PNG") and f"picture: {figure}" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.png"]  # no temporary left
    one_line(invoke("plan", SYNTHETIC, "--fs", "ext2", "--plot", figure), 2, "--force")


def test_sweep_results_path_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "g"\n[base.memory]\nsize = "32MiB"\nblock_size = "8MiB"\n'
        '[axes]\n"workload.seed" = [1, 2]\n'
    )
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    one_line(invoke("sweep", grid, "-o", fifo), 2, "not a regular file")


@pytest.mark.parametrize("resume", [(), ("--resume",)])
@pytest.mark.parametrize("through_link", [False, True])
def test_a_one_line_file_that_is_not_a_results_file_is_refused_and_kept(
    tmp_path, resume, through_link
):
    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "g"\n{GRID_BASE}[axes]\n"workload.seed" = [1]\n')
    precious = tmp_path / "important.json"
    precious.write_text('{"precious": true}\n')
    out = precious
    if through_link:
        out = tmp_path / "link_to_file"
        out.symlink_to(precious.name)
    one_line(invoke("sweep", grid, "-o", out, *resume), 2, "not a hotremove-sweep/1 results")
    assert precious.read_text() == '{"precious": true}\n'


@pytest.mark.parametrize(
    "options",
    [
        ("--scheduler", "tcp://127.0.0.1:1"),
        ("--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "-j", "2"),
    ],
)
def test_a_refused_sweep_leaves_no_results_file(tmp_path, options):
    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "g"\n{GRID_BASE}[axes]\n"workload.seed" = [1]\n')
    one_line(invoke("sweep", grid, "-o", tmp_path / "s55.csv", *options), 2)
    assert not (tmp_path / "s55.csv").exists()


# -- bounded reads ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("scenario", "check"), ("run",), ("sweep", "--list")])
def test_a_device_or_a_fifo_given_as_an_input_file_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "in.toml"
    os.mkfifo(fifo)
    for source in ("/dev/zero", fifo):
        one_line(invoke(*command, source), 2, "not a")


def test_a_snapshot_that_is_not_a_regular_file_is_refused(tmp_path):
    one_line(invoke("plan", "/dev/zero"), 2, "character device")


# -- sizes and numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [200, 2000])
@pytest.mark.parametrize("command", [("scenario", "check"), ("run",), ("sweep", "--list")])
def test_deeply_nested_toml_is_one_line_naming_the_key(tmp_path, command, depth):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * depth + "]" * depth + "\n")
    one_line(invoke(*command, deep), 2, "x: nested too deep")


def test_four_hundred_digit_sizes_are_one_line_everywhere(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'[memory]\nsize = "{HUGE_DIGITS}"\n')
    one_line(invoke("scenario", "check", scenario), 2, "memory.size")
    one_line(invoke("bench", "--size", HUGE_DIGITS), 2, "--size")
    one_line(invoke("scenario", "check", scenario, env={"HOTREMOVE_MEMORY_LIMIT": HUGE_DIGITS}))
    grid = tmp_path / "g.toml"
    for axis in (
        f'"memory.size" = ["{HUGE_DIGITS}"]',
        '"workload.anon" = {range = [0, 1e400]}',
        '"workload.dirty" = {range = [0, nan]}',
        '"workload.dirty" = {range = [inf, 1]}',
        f'"workload.anon" = {{range = [0, 1{"0" * 400}]}}',
    ):
        grid.write_text(f'name = "g"\n{GRID_BASE}[axes]\n{axis}\n')
        one_line(invoke("sweep", "--list", grid), 2, "axes.")


def test_full_width_digits_are_not_a_size(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text('[memory]\nsize = "１２８MiB"\nblock_size = "32MiB"\n')
    one_line(invoke("scenario", "check", scenario), 2, "memory.size")


@pytest.mark.parametrize("value", ["\uff11", "1_000", " 1", "+1", "1_0", "\uff12"])
@pytest.mark.parametrize(
    "command",
    [("run", "--seed"), ("compare", "--seed"), ("bench", "--repeat"), ("sweep", "-j")],
)
def test_integer_options_take_ascii_digits_only(tmp_path, small, command, value):
    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "g"\n{GRID_BASE}[axes]\n"workload.seed" = [1]\n')
    name, option = command
    target = grid if name == "sweep" else small
    extra = ("-o", tmp_path / "out.csv") if name == "sweep" else ()
    one_line(invoke(name, target, *extra, option, value), 2, option, "ASCII digits")
    assert not (tmp_path / "out.csv").exists()


def test_a_negative_seed_is_refused_in_one_line_by_check_and_by_every_command(tmp_path, small):
    negative = tmp_path / "neg.toml"
    negative.write_text(SMALL + "[workload]\nseed = -1\n")
    one_line(invoke("scenario", "check", negative), 2, "workload.seed")
    one_line(invoke("run", negative), 2, "workload.seed")
    for command in (("run", small), ("compare", small), ("demo",)):
        one_line(invoke(*command, "--seed", "-1"), 2, "--seed")


def test_an_axis_given_twice_is_refused(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(
        f'name = "g"\n{GRID_BASE}[axes]\n"workload.dirty" = [0, 0.5]\n'
        "[axes.workload]\ndirty = [1]\n"
    )
    one_line(invoke("sweep", "--list", grid), 2, "axes.workload.dirty", "once")
    grid.write_text(
        f'name = "g"\n{GRID_BASE}[axes]\n"filesystem[0].files" = [1, 2]\n'
        '"filesystem[*].files" = [3]\n'
    )
    one_line(invoke("sweep", "--list", grid), 2, "filesystem[*].files")


# -- options never silently ignored --------------------------------------------------------------
def test_run_file_blocks_overrides_the_scenario_and_snapshot_options_are_refused(
    small, image_cache
):
    proc = invoke("run", small, "--blocks", "2", "--json", env=image_cache)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["blocks"] == [2]
    for option in (("--fs", "ext2"), ("--fs-options", "nobh"), ("--flagless", "unmovable")):
        one_line(invoke("run", small, *option), 2, option[0], "--snapshot")
    one_line(invoke("run", small, "--blocks", "1,1"), 2, "--blocks", "twice")
    one_line(invoke("run", "--snapshot", SYNTHETIC, "--blocks", "1", "--seed", "3"), 2, "--seed")


@pytest.mark.parametrize("kernels", ["6.1,", ",6.1", "6.1,,7.2", "6.1, ,7.2"])
def test_compare_with_an_empty_kernel_item_is_refused(small, kernels):
    one_line(invoke("compare", small, "--kernel", kernels), 2, "--kernel", "empty item")


def test_a_filesystem_option_given_twice_is_refused(tmp_path):
    scn = tmp_path / "twice.toml"
    scn.write_text(SMALL + 'type = "ext2"\noptions = ["nobh", "nobh"]\n')
    one_line(invoke("scenario", "check", scn), 2, "options", "'nobh' is given twice")


def test_hotremove_plugins_naming_no_installed_plugin_is_named_in_the_error(small):
    proc = invoke("run", small, env={"HOTREMOVE_PLUGINS": "ext2,nonexistent"})
    one_line(proc, 2, "HOTREMOVE_PLUGINS", "'nonexistent'", "installed:")


def test_compare_with_one_kernel_given_twice_is_refused(small):
    one_line(invoke("compare", small, "--kernel", "6.1,6.1"), 2, "--kernel", "twice")


# -- the terminal --------------------------------------------------------------------------------
def test_columns_zero_is_one_line_not_silence():
    one_line(invoke("kernels", env={"COLUMNS": "0"}), 2, "COLUMNS")
    one_line(invoke("kernels", env={"COLUMNS": "abc"}), 2, "COLUMNS")


def test_an_ascii_only_output_encoding_never_raises(small):
    proc = hotremove("plan", SYNTHETIC, "--fs", "ext2", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "?" in proc.stdout  # what ASCII cannot spell


def test_plan_table_is_split_never_cut_at_80_columns_and_unpadded_into_a_pipe():
    proc = invoke("plan", SYNTHETIC, "--fs", "ext2", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "(continued)" in proc.stdout
    table = [line for line in proc.stdout.splitlines() if line[:1] in " 0123456789#"]
    assert table and max(len(line) for line in table if not line.startswith("  ")) <= 80
    piped = invoke("plan", SYNTHETIC, "--fs", "ext2")
    lines = piped.stdout.splitlines()
    assert "…" not in piped.stdout and all(line == line.rstrip() for line in lines)
    prose = [line for line in lines if line.startswith("classes: ")]
    assert len(prose) == 1 and len(prose[0]) > 120  # one line, never wrapped into a pipe


# -- snapshots and results files that lie --------------------------------------------------------
def _snapshot_with(tmp_path: Path, name: str, edit) -> Path:
    """The synthetic snapshot with its header edited by ``edit(header)`` (the checksum, which
    covers the page flags, still holds: the edit is exactly what a checksum cannot catch)."""
    with np.load(SYNTHETIC) as data:
        header = json.loads(data["header"].tobytes())
        flags, counts = data["flags"], data["counts"]
    edit(header)
    path = tmp_path / f"{name}.npz"
    text = json.dumps(header).encode()
    np.savez_compressed(path, header=np.frombuffer(text, np.uint8), flags=flags, counts=counts)
    return path


@pytest.mark.parametrize(
    ("name", "edit", "field"),
    [
        ("no-checksum", lambda h: h.pop("checksum"), "checksum"),
        ("huge-index", lambda h: h["blocks"][0].update(index=10**30), "blocks[0].index"),
        ("text-index", lambda h: h["blocks"][0].update(index="x"), "blocks[0].index"),
        ("negative-index", lambda h: h["blocks"][0].update(index=-1), "blocks[0].index"),
        ("duplicate-index", lambda h: h["blocks"][1].update(index=0), "blocks"),
        ("nan-meminfo", lambda h: h["meminfo"].update(MemFree=float("nan")), "NaN"),
        ("float-meminfo", lambda h: h["meminfo"].update(MemFree=1.5), "MemFree"),
        ("escapes", lambda h: h.update(kernel="\x1b[2J\x1b]0;owned\x07"), "kernel"),
        ("bool-size", lambda h: h.update(block_size=True), "block_size"),
        ("odd-block-size", lambda h: h.update(block_size=4096 * 3), "block_size"),
    ],
)
def test_a_snapshot_header_edited_under_its_checksum_is_refused(tmp_path, name, edit, field):
    path = _snapshot_with(tmp_path, name, edit)
    line = one_line(invoke("plan", path, "--fs", "ext2"), 2, field)
    assert "\x1b" not in line


def test_a_snapshot_with_every_flag_bit_set_plans_in_bounded_memory(tmp_path):
    """Every page flagged compound head and tail: the folio walk stays linear (it made
    `plan` allocate 16-24 GB). Eight 128 MiB blocks under a 1.5 GiB address-space limit."""
    from hotremove.realmachine.snapshot import BlockInfo, Mount, Snapshot

    blocks, ppb = 8, 32768
    path = Snapshot(
        block_size=ppb * 4096,
        blocks=[BlockInfo(i, "online", "Normal") for i in range(blocks)],
        flags=np.full((blocks, ppb), (1 << 64) - 1, np.uint64),
        counts=np.zeros((blocks, ppb), np.uint8),
        mounts=[Mount("/dev/vda", "/", "ext4", ("rw",))],
    ).save(tmp_path / "all-bits.npz")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)); "
    proc = hotremove(
        "plan", path, "--json", code=limit + "from hotremove.startup import main; main()"
    )
    assert proc.returncode == 0, proc.stderr[-800:]
    assert len(json.loads(proc.stdout)["blocks"]) == blocks
    # and what cannot fit is refused before its page flags are read
    one_line(invoke("plan", path, env={"HOTREMOVE_MEMORY_LIMIT": "64MiB"}), 2, "snapshot")


RESULTS_GRID = """
name = "r"
[base.memory]
size = "32MiB"
block_size = "8MiB"
[[base.filesystem]]
name = "fs"
size = "4MiB"
files = 8
file_size = "16KiB"
[axes]
"workload.seed" = [1]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, Path]:
    """A grid and its results file holding a real run's row (run in this process)."""
    from hotremove import sweep as sw
    from hotremove.sweep.rows import header, run_one

    where = tmp_path_factory.mktemp("results")
    grid_file, out = where / "r.toml", where / "r.csv"
    grid_file.write_text(RESULTS_GRID)
    grid = sw.load_grid(grid_file)
    (run,) = grid.runs
    os.environ["HOTREMOVE_CACHE"] = str(where / "cache")
    try:
        row = run_one(run.run_id, run.scenario, grid.name)
    finally:
        del os.environ["HOTREMOVE_CACHE"]
    assert row["status"] == "ok", row
    results = sw.ResultsFile(out, header(grid))
    results.open(resume=False, overwrite=True)
    results.append({**row, "run_index": run.index, **run.values})
    results.close()
    assert invoke("sweep", grid_file, "-o", out, "--list").returncode == 0
    return grid_file, out


def _edit_row(out: Path, dest: Path, column: str, value: str) -> None:
    """Set ``column`` of the first row to ``value`` and recompute the row's checksum."""
    import csv
    import io

    from hotremove.sweep.results import checksum

    lines = out.read_text().splitlines()
    head = next(csv.reader([lines[0]]))
    cells = next(csv.reader([lines[1]]))
    cells[head.index(column)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells[:-1])
    body = buf.getvalue()
    dest.write_text(lines[0] + "\n" + body + "," + checksum(body.encode()) + "\n")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("migrated", "abc"),
        ("migrated", "nan"),
        ("migrated", "-5"),
        ("migrated", "1" + "0" * 30),
        ("simulated_seconds", "nan"),
        ("simulated_seconds", "inf"),
        ("blocks", "[1e30]"),
        ("blocks", '["x"]'),
        ("blocks", "[1, 1]"),
        ("blocks", "[-1]"),
        ("blocks", "[" + "1" * 40 + "]"),
        ("offlined", "yes"),
        ("status", "great"),
        ("retries", "NaN"),
    ],
)
def test_a_results_row_edited_under_its_checksum_is_refused(results, tmp_path, column, value):
    grid, out = results
    edited = tmp_path / "edited.csv"
    _edit_row(out, edited, column, value)
    one_line(invoke("sweep", grid, "-o", edited, "--list"), 2, "line 2", column)


# -- signals -------------------------------------------------------------------------------------
def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir())


def _state(pid: int) -> str | None:
    """A process's state letter (``Z``: a zombie), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (a sweep's pool workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="Linux signals and /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_a_sweep_leaves_no_image_no_worker_and_says_how_to_resume(tmp_path, signum):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    grid = tmp_path / "g.toml"
    grid.write_text(RESULTS_GRID.replace("[1]", "[1, 2, 3, 4, 5, 6]"))
    out = tmp_path / "out.csv"
    proc = spawn(
        "sweep",
        grid,
        "-o",
        out,
        "--workers",
        "2",
        env={"TMPDIR": str(tmp), "HOTREMOVE_CACHE": str(tmp_path / "cache")},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(tmp.glob("hotremove-sweep-*")):
        time.sleep(0.01)  # a worker is building a run's images now
    workers = _children(proc.pid)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert err.splitlines()[-1].endswith(f"-o {out} --resume"), err
    assert _leftovers(tmp) == [], "a run's temporary images were left behind"
    time.sleep(0.2)
    alive = [w for w in workers if _state(w) not in (None, "Z")]
    assert alive == [], "a pool worker outlived the sweep"


@pytest.mark.skipif(sys.platform != "linux", reason="Linux signals and /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.2, 0.5, 0.8])
def test_a_signal_to_the_group_while_workers_start_prints_no_worker_traceback(
    tmp_path, signum, delay
):
    grid = tmp_path / "g.toml"
    grid.write_text(RESULTS_GRID.replace("[1]", "[1, 2, 3, 4]"))
    proc = spawn(
        "sweep",
        grid,
        "-o",
        tmp_path / "out.csv",
        "-j",
        "2",
        env={"HOTREMOVE_CACHE": str(tmp_path / "cache")},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _children(proc.pid):
        time.sleep(0.005)  # the pool's workers are starting: Python, then their imports
    time.sleep(delay)
    os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C (or a kill of the job) does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "Error" not in err, err
    assert [line for line in err.splitlines() if line.startswith("hotremove:")], err


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
def test_sigterm_on_run_is_one_line_exit_143_and_leaves_no_file(tmp_path, image_cache):
    tmp, keep = tmp_path / "tmp", tmp_path / "keep"
    tmp.mkdir()
    scenario = tmp_path / "s.toml"
    scenario.write_text(SMALL.replace('"32KiB"', '"256KiB"').replace("16", "12"))
    for extra in ((), ("--keep-images", keep)):
        proc = spawn(
            "run",
            scenario,
            "--json",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            *extra,
            env={"TMPDIR": str(tmp), **image_cache},
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first page migrated: mid-offline
            line = proc.stderr.readline()
            if not line or '"page_migrated"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # the run won the race
        assert proc.returncode == 143, err[-800:]
        assert stdout == "" and err.splitlines()[-1] == "hotremove: terminated"
        assert "Traceback" not in err
        assert _leftovers(tmp) == []
        if extra:
            assert [p for p in keep.iterdir() if not p.name.endswith(".img")] == []


def _handles_sigterm(pid: int) -> bool:
    """Whether ``pid`` catches SIGTERM yet (hotremove.startup's first act)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and /proc")
def test_ctrl_c_during_start_up_is_one_line_exit_130():
    """From hotremove's first line of code on (the interpreter's own start-up before it is
    Python's), Ctrl-C while the command line is still being imported is one line and 130."""
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        proc = spawn("kernels")
        deadline = time.monotonic() + 30
        while not _handles_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # finished before the signal
        assert proc.returncode == 130, (delay, err)
        assert err.strip() == "hotremove: interrupted", (delay, err)


# -- the image cache -----------------------------------------------------------------------------
def test_a_damaged_cached_image_is_made_again_not_reported_as_failed(small, image_cache):
    first = invoke("run", small, "--json", env=image_cache)
    assert first.returncode == 0, first.stderr
    images = list(Path(image_cache["HOTREMOVE_CACHE"], "images").glob("*.img"))
    assert len(images) == 1
    with open(images[0], "r+b") as f:  # damage a data block of the cached image
        f.seek(200 * 1024)
        f.write(b"\xff" * 4096)
    again = invoke("run", small, "--json", env=image_cache)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["verify"]["ok"]
    assert "image_cache_damaged" in again.stderr


def test_cache_clear_never_follows_a_symlink_nor_removes_files_it_did_not_make(
    small, image_cache, tmp_path
):
    user = tmp_path / "user"
    user.mkdir()
    (user / "ext2-abc.img").write_bytes(b"someone's image")
    cache = Path(image_cache["HOTREMOVE_CACHE"])
    cache.mkdir()
    (cache / "images").symlink_to(user)
    one_line(invoke("cache", "clear", env=image_cache), 2, "HOTREMOVE_CACHE", "symlink")
    assert (user / "ext2-abc.img").read_bytes() == b"someone's image"
    (cache / "images").unlink()
    assert invoke("run", small, env=image_cache).returncode == 0
    (cache / "images" / "ext2-abc.img").write_bytes(b"someone's image")  # no record: not ours
    proc = invoke("cache", "clear", env=image_cache)
    assert proc.returncode == 0 and "removed 1 image(s)" in proc.stdout, proc.stdout
    assert [p.name for p in (cache / "images").iterdir()] == ["ext2-abc.img"]


def test_the_image_cache_is_listed_cleared_and_kept_under_its_limit(small, image_cache, tmp_path):
    from hotremove.workload import imagecache

    assert invoke("run", small, env=image_cache).returncode == 0
    listed = json.loads(invoke("cache", "list", "--json", env=image_cache).stdout)
    assert len(listed["entries"]) == 1 and listed["entries"][0]["checksummed"]
    cache = Path(image_cache["HOTREMOVE_CACHE"], "images")
    (entry,) = imagecache.entries(cache)
    os.utime(imagecache.record_of(entry.image), (0, 0))  # used long ago
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("files = 16", "files = 15"))
    env = {**image_cache, "HOTREMOVE_CACHE_LIMIT": "1KiB"}
    assert invoke("run", other, env=env).returncode == 0
    names = [e.name for e in imagecache.entries(cache)]
    assert entry.name not in names and len(names) == 1  # the least recently used went
    cleared = invoke("cache", "clear", env=image_cache)
    assert cleared.returncode == 0 and "removed 1 image(s)" in cleared.stdout
    assert list(cache.iterdir()) == []


# -- the example scenario, new-plugin, install as a tool -----------------------------------------
def test_the_example_scenario_runs_to_exit_0(tmp_path, image_cache):
    example = tmp_path / "example.toml"
    example.write_text(invoke("scenario", "--example").stdout)
    proc = invoke("run", example, env=image_cache)
    assert proc.returncode == 0, proc.stderr
    lesson = invoke("scenario", "--example", "journal").stdout
    assert 'options = ["data=journal"]' in lesson and 'version = "6.12"' in lesson


def test_new_plugin_prints_commands_that_name_a_path(tmp_path):
    proc = invoke("new-plugin", "hostile_x", "--dir", tmp_path / "pkg")
    assert proc.returncode == 0, proc.stderr
    assert f"uv add --dev --editable {tmp_path / 'pkg'}" in proc.stdout
    os.chdir(tmp_path)
    proc = invoke("new-plugin", "hostile_y")
    assert "uv add --dev --editable ./hotremove-hostile-y" in proc.stdout
    (tmp_path / "afile").write_text("x")
    one_line(invoke("new-plugin", "hostile_z", "--dir", tmp_path / "afile"), 2, "--dir")


#: every plugin of the workspace (plugins/*): the tool's wheel carries each of them
BUILT_IN = sorted(p.name for p in (SOURCE / "plugins").iterdir() if (p / "pyproject.toml").exists())
#: the members with an entry point (plugins/e2fs is a library the ext plugins share)
ENTRY_POINTS = [
    name
    for name in BUILT_IN
    if "[project.entry-points" in (SOURCE / "plugins" / name / "pyproject.toml").read_text()
]


def test_the_clone_installs_as_a_tool_with_its_plugins(tmp_path):
    """`uv tool install .` / `pipx install .` build the root's one wheel: the core, the
    command line and the four built-in plugins. Built and installed here into a fresh
    environment (from uv's cache: no network), it puts `hotremove` on PATH with them."""
    import shutil
    import zipfile

    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    build = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", tmp_path / "dist", SOURCE],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("hotremove", *(f"hotremove_{name}" for name in BUILT_IN)):
        assert f"{package}/__init__.py" in names
    assert "hotremove/scenarios/example.toml" in names
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", venv], check=True, timeout=120)
    install = subprocess.run(
        [uv, "pip", "install", "-q", "--offline", "--python", venv / "bin" / "python", wheel],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    proc = subprocess.run(
        [venv / "bin" / "hotremove", "plugins", "--json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plugins = json.loads(proc.stdout)["plugins"]
    assert sorted(p["name"] for p in plugins) == ENTRY_POINTS
    assert not any(p["error"] for p in plugins)
