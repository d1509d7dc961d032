"""`hotremove sweep`: grid parsing, both executors on a tiny grid, rows, resume, the figure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotremove import sweep as sw
from hotremove.cli.sweep import sweep_command
from hotremove.scenario import validate
from hotremove.sim.verify import Verdict

from .conftest import damaged_copies, spawn
from .conftest import invoke as cli_invoke

BASE = """
name = "tiny"

[base.memory]
size = "32MiB"
block_size = "8MiB"

[[base.filesystem]]
name = "fs"
type = "ext2"
block_size = 1024
size = "4MiB"
files = 16
file_size = "32KiB"

# Linux 6.12: forced writeback writes the dirty pages out (7.2's fallback refuses them)
[base.kernel]
version = "6.12"

[base.remove]
blocks = [1]
"""

AXES = """
[axes]
"workload.dirty" = [0, 1.0]
"remove.strategy" = ["auto", "writeback"]
"""


def write_grid(tmp_path: Path, axes: str = AXES, base: str = BASE, name: str = "grid") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(base + axes, encoding="utf-8")
    return path


def invoke(*args: str | Path):
    result = CliRunner().invoke(sweep_command, [str(a) for a in args], catch_exceptions=False)
    return result


def csv_ids(path: Path) -> list[str]:
    _, rows = sw.ResultsFile.read(path, torn="drop")  # a row may be landing right now
    return [r["run_id"] for r in rows]


# --------------------------------------------------------------------------- the grid


def test_grid_is_the_product_of_its_axes_in_file_order(tmp_path):
    grid = sw.load_grid(write_grid(tmp_path, AXES + '"workload.seed" = {range = [1, 3]}\n'))
    assert grid.axis_keys == ["workload.dirty", "remove.strategy", "workload.seed"]
    assert len(grid.runs) == 2 * 2 * 3
    assert [r.values["workload.seed"] for r in grid.runs[:3]] == [1, 2, 3]  # range: both ends
    assert grid.runs[3].values == {
        "workload.dirty": 0,
        "remove.strategy": "writeback",
        "workload.seed": 1,
    }
    last = validate(grid.runs[-1].scenario).model_dump()
    assert last["workload"]["dirty"] == 1.0
    assert last["remove"]["strategy"] == "writeback"
    assert last["workload"]["seed"] == 3
    assert len({r.run_id for r in grid.runs}) == len(grid.runs)
    # the plot's defaults: dirty share on x, one line per other axis, seeds averaged
    assert grid.plot.x == "workload.dirty"
    assert grid.plot.lines == ("remove.strategy",)
    assert grid.aggregated == ["workload.seed"]


def test_run_ids_depend_on_the_scenario_not_on_how_the_grid_spells_it(tmp_path):
    quoted = sw.load_grid(write_grid(tmp_path, AXES, name="a"))
    nested = sw.load_grid(
        write_grid(
            tmp_path,
            '[axes.workload]\ndirty = [0, 1]\n[axes.remove]\nstrategy = ["auto", "writeback"]\n',
            name="b",
        )
    )
    assert [r.run_id for r in quoted.runs] == [r.run_id for r in nested.runs]
    changed = sw.load_grid(write_grid(tmp_path, base=BASE.replace("32KiB", "16KiB"), name="c"))
    assert not {r.run_id for r in changed.runs} & {r.run_id for r in quoted.runs}
    # a default spelt out is the same scenario (and a key the schema gains with a default
    # changes no id: ids hash the non-default values)
    spelt = BASE.replace('type = "ext2"', 'type = "ext2"\noptions = []') + "mode = 'sync'\n"
    same = sw.load_grid(write_grid(tmp_path, base=spelt, name="d"))
    assert [r.run_id for r in same.runs] == [r.run_id for r in quoted.runs]


def test_filesystem_axis_with_star_sets_every_filesystem(tmp_path):
    second = '\n[[base.filesystem]]\nname = "gs"\nsize = "4MiB"\nfiles = 4\nfile_size = "8KiB"\n'
    base = BASE.replace("\n[base.remove]", second + "\n[base.remove]")
    grid = sw.load_grid(
        write_grid(tmp_path, '[axes]\n"filesystem[*].block_size" = [1024, 4096]\n', base)
    )
    assert [[fs.block_size for fs in validate(r.scenario).filesystem] for r in grid.runs] == [
        [1024, 1024],
        [4096, 4096],
    ]


@pytest.mark.parametrize(
    ("axes", "named"),
    [
        ('[axes]\n"workload.dirt" = [0, 1]\n', "axes.workload.dirt: unknown key"),
        ('[axes]\n"workload.dirty" = [0, 2]\n', "axes.workload.dirty = 2:"),
        ('[axes]\n"workload.dirty" = []\n', "axes.workload.dirty: no values"),
        ('[axes]\n"workload.dirty" = 0.5\n', "axes.workload.dirty: must be a list"),
        ('[axes]\n"workload.dirty" = [0.5, 0.5]\n', "axes.workload.dirty: value 0.5 appears twice"),
        ('[axes]\n"workload.seed" = {range = [5, 1]}\n', "axes.workload.seed: range"),
        ('[axes]\n"workload.seed" = {range = [1, 5], by = 2}\n', "axes.workload.seed: unknown key"),
        ('[axes]\n"device.preset" = ["ide-2004", "floppy"]\n', 'axes.device.preset = "floppy"'),
        ('[axes]\n"remove.strategy" = ["auto", "magic"]\n', 'axes.remove.strategy = "magic"'),
        (
            '[axes]\n"filesystem.block_size" = [1024]\n',
            "axes.filesystem.block_size: filesystem is a list",
        ),
        (
            '[axes]\n"filesystem[3].files" = [1]\n',
            "axes.filesystem[3].files: the base scenario has 1",
        ),
        (
            '[axes]\n"filesystem[0].block_size" = [1024, 512]\n',
            "axes.filesystem[0].block_size = 512",
        ),
        ('[axes]\n"memroy.size" = ["64MiB"]\n', "axes.memroy.size: unknown section"),
        ('[axes]\n"dirty" = [0]\n', "axes.dirty: not a scenario key"),
        ('[axes]\n"filesystem[0].files" = [16, 1000]\n', "axes.filesystem[0].files = 1000"),
        ('[axes]\n"workload.anon" = [0, "64MiB"]\n', 'run 1 (workload.anon="64MiB"): memory.size'),
        ("", "axes: missing"),
        (AXES + '[plot]\nx = "device.preset"\n', "plot.x"),
        (AXES + '[plot]\ny = "scenario"\n', "plot.y"),
        ("plot = 1\n" + AXES, "base.remove.plot: unknown key"),
    ],
)
def test_bad_grid_is_exit_2_with_the_key_named(tmp_path, axes, named):
    result = invoke(write_grid(tmp_path, axes), "--list")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hotremove: error: "), lines[0]
    assert named in lines[0], lines[0]
    assert result.stdout == ""


def test_bad_base_names_the_base_key(tmp_path):
    result = invoke(write_grid(tmp_path, base=BASE.replace('"8MiB"', '"7MiB"')), "--list")
    assert result.exit_code == 2
    assert "grid.toml: base.memory.size: must be a positive multiple" in result.stderr
    result = invoke(write_grid(tmp_path, base="axess = 1\n" + BASE), "--list")
    assert result.exit_code == 2
    assert "grid.toml: axess: unknown key" in result.stderr
    missing = tmp_path / "nobase.toml"
    missing.write_text(AXES)
    result = invoke(missing, "--list")
    assert result.exit_code == 2
    assert "base: missing" in result.stderr


def test_list_shows_the_runs_and_runs_nothing(tmp_path):
    grid_file = write_grid(tmp_path)
    output = tmp_path / "out.csv"
    result = invoke(grid_file, "--list", "-o", output)
    assert result.exit_code == 0, result.stderr
    for run in sw.load_grid(grid_file).runs:
        assert run.run_id in result.stdout
    assert "4 runs over 2 axes; 0 have rows" in result.stdout
    assert not output.exists()


# --------------------------------------------------------------------------- executors


@pytest.fixture(scope="module")
def dask_scheduler():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


def test_local_and_dask_executors_give_identical_rows(tmp_path, dask_scheduler):
    grid_file = write_grid(tmp_path)
    grid = sw.load_grid(grid_file)
    local, dask = tmp_path / "local.csv", tmp_path / "dask.csv"
    result = invoke(grid_file, "-o", local, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "4 of 4 runs have rows: 4 ok" in result.stdout
    assert "local process pool" in result.stdout
    result = invoke(grid_file, "-o", dask, "--executor", "dask", "--scheduler", dask_scheduler)
    assert result.exit_code == 0, result.output
    assert "Dask cluster at" in result.stdout

    rows_local, stray = sw.existing_rows(grid, local)
    rows_dask, _ = sw.existing_rows(grid, dask)
    assert stray == 0
    assert set(rows_local) == set(rows_dask) == {r.run_id for r in grid.runs}
    for run_id in rows_local:
        assert sw.identity(rows_local[run_id]) == sw.identity(rows_dask[run_id])
    for run in grid.runs:
        row = rows_local[run.run_id]
        assert row["status"] == "ok" and row["verify_ok"] and row["verify_files_checked"] == 16
        if run.values["remove.strategy"] == "auto":
            assert row["rebound"] == row["migrated"] > 0 and row["writeback_ios"] == 0
        elif run.values["workload.dirty"] == 1.0:
            assert row["written_back"] > 0 and row["writeback_ios"] > 0
    # the same file read back twice is the same rows (typed: floats round-trip exactly)
    assert sw.existing_rows(grid, local)[0] == rows_local

    figure = tmp_path / "fig.png"
    result = invoke(grid_file, "-o", local, "--resume", "--plot", figure)
    assert result.exit_code == 0
    assert "0 new, 4 already in" in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_that_fails_verification_is_a_failed_row(tmp_path, dask_scheduler, monkeypatch):
    # the in-process Dask worker runs in this process, so the patched verify applies to it
    def corrupted(built, hooks):
        return Verdict(
            ok=False, files_checked=16, mismatches=[{"fs": "fs", "file": "f0", "offset": 0}]
        )

    monkeypatch.setattr("hotremove.sim.runner.verify", corrupted)
    grid_file = write_grid(tmp_path, '[axes]\n"workload.dirty" = [0.5]\n')
    output = tmp_path / "out.csv"
    result = invoke(grid_file, "-o", output, "--executor", "dask", "--scheduler", dask_scheduler)
    assert result.exit_code == 1
    assert "1 failed" in result.stdout
    assert "verification failed: 1 mismatch(es)" in result.stdout
    (row,) = sw.existing_rows(sw.load_grid(grid_file), output)[0].values()
    assert row["status"] == "failed" and row["ok"] is False and row["verify_ok"] is False
    assert row["verify_mismatches"] == 1 and row["offlined"] is True


def test_existing_results_need_resume_or_overwrite(tmp_path):
    grid_file = write_grid(tmp_path)
    output = tmp_path / "out.csv"
    output.write_text("run_id,other\nabc,1\n")
    result = invoke(grid_file, "-o", output)
    assert result.exit_code == 2
    assert "--resume continues it, --overwrite replaces it" in result.stderr
    result = invoke(grid_file, "-o", output, "--resume")
    assert result.exit_code == 2
    assert "not a hotremove-sweep/1 results file" in result.stderr


# --------------------------------------------------------------------------- resume


def start_sweep(grid_file: Path, output: Path, *extra: str) -> subprocess.Popen:
    return spawn(
        *(grid_file, "-o", output, "--workers", "1", *extra),
        code="from hotremove.cli.sweep import main; main()",
        start_new_session=True,  # the pool's workers too, for the SIGKILL
    )


def wait_for_rows(output: Path, count: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if output.exists() and len(csv_ids(output)) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    pytest.fail(f"no {count} rows in {output} after {timeout} s")


def test_an_interrupted_sweep_resumes_with_one_row_per_run(tmp_path):
    grid_file = write_grid(tmp_path, AXES + '"workload.seed" = {range = [1, 4]}\n')
    grid = sw.load_grid(grid_file)
    output = tmp_path / "out.csv"

    # killed outright: every row that landed is whole
    proc = start_sweep(grid_file, output)
    wait_for_rows(output, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = output.read_bytes()
    assert 2 <= len(csv_ids(output)) < len(grid.runs)
    assert kept.endswith(b"\n")
    # as if the kill had torn a line in half: resume must cut it off, not glue a row to it
    output.write_bytes(kept + b"deadbeef0000,3,ok,,0,auto")

    # Ctrl-C: exit 130 and a hint
    proc = start_sweep(grid_file, output, "--resume")
    wait_for_rows(output, len(csv_ids(output)) + 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"-o {output} --resume" in err.splitlines()[-1]  # the command that resumes it
    assert len(csv_ids(output)) < len(grid.runs)
    assert output.read_bytes().startswith(kept)

    done = len(csv_ids(output))
    result = invoke(grid_file, "-o", output, "--resume")
    assert result.exit_code == 0, result.output
    assert f"{len(grid.runs) - done} new, {done} already in" in result.stdout
    ids = csv_ids(output)
    assert sorted(ids) == sorted(r.run_id for r in grid.runs)  # one row per run, no torn row
    assert output.read_bytes().startswith(kept)


# --------------------------------------------------------------------------- rows and figure


def test_failure_reason_names_what_went_wrong():
    report = {
        "ok": False,
        "offlined": False,
        "failed": [{"pfn": 0x2000, "reason": "-EBUSY"}],
        "checks": [],
        "lock_violations": [],
        "verify": {
            "ok": False,
            "fsck": {"fs": {"ok": False, "checker": "e2fsck"}, "ok": {"ok": True}},
            "mismatches": [{}, {}],
        },
    }
    assert sw.failure_reason(report) == (
        "not offlined: 1 page(s) failed (first: pfn 0x2000 -EBUSY); "
        "verification failed: e2fsck not clean on fs, 2 mismatch(es)"
    )
    report["verify"]["fsck"]["fs"].pop("checker")  # a report from before checkers had names
    assert sw.failure_reason(report).endswith("fsck not clean on fs, 2 mismatch(es)")
    assert sw.failure_reason({"ok": True}) == ""


def test_plot_draws_one_line_per_strategy_and_marks_failed_runs(tmp_path):
    grid = sw.load_grid(write_grid(tmp_path, AXES + '"device.preset" = ["ide-2004", "nvme"]\n'))
    rows = {}
    for run in grid.runs:
        slow = run.values["remove.strategy"] == "writeback" and run.values["workload.dirty"]
        rows[run.run_id] = {
            "status": "failed" if run.index == 0 else "ok",
            "simulated_seconds": 1.0 if slow else 1e-4,
        }
    figure = tmp_path / "fig.png"
    assert sw.plot(grid, rows, figure) == 4
    assert figure.stat().st_size > 10_000


def test_two_sweeps_cannot_write_one_results_file(tmp_path):
    grid = sw.load_grid(write_grid(tmp_path))
    output = tmp_path / "out.csv"
    first = sw.ResultsFile(output, sw.header(grid))
    assert first.open(resume=False, overwrite=False) == []
    try:
        result = invoke(tmp_path / "grid.toml", "-o", output, "--resume")
        assert result.exit_code == 2
        assert "another sweep is writing this file" in result.stderr
    finally:
        first.close()


def test_float_range_includes_both_ends(tmp_path):
    grid = sw.load_grid(
        write_grid(tmp_path, '[axes]\n"workload.dirty" = {range = [0, 1], step = 0.25}\n')
    )
    assert [r.values["workload.dirty"] for r in grid.runs] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_an_exception_inside_a_run_is_an_error_row(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mke2fs\nexploded")

    monkeypatch.setattr("hotremove.sim.runner.run_scenario", broken)
    run = sw.load_grid(write_grid(tmp_path)).runs[0]
    row = sw.run_one(run.run_id, run.scenario, "tiny")
    assert row["status"] == "error"
    assert row["reason"] == "RuntimeError: mke2fs exploded"
    assert row["run_id"] == run.run_id


# --------------------------------------------------------------------------- kernel versions

JOURNAL_BASE = BASE.replace('type = "ext2"', 'type = "ext3"\noptions = ["data=journal"]').replace(
    "[base.remove]\nblocks = [1]",
    "[base.workload]\ndirty = 1.0\n\n[base.remove]\nblocks = [1]\ntimeout = 5",
)


def test_kernel_version_is_a_grid_axis(tmp_path):
    grid_file = write_grid(tmp_path, '[axes]\n"kernel.version" = ["6.1", "6.12"]\n', JOURNAL_BASE)
    grid = sw.load_grid(grid_file)
    assert [r.values["kernel.version"] for r in grid.runs] == ["6.1", "6.12"]
    assert [validate(r.scenario).kernel.version for r in grid.runs] == ["6.1", "6.12"]
    assert len({r.run_id for r in grid.runs}) == 2
    output = tmp_path / "out.csv"
    result = invoke(grid_file, "-o", output, "--workers", "1")
    assert result.exit_code == 1, result.output  # 6.12 does not offline data=journal pages
    rows, _ = sw.existing_rows(grid, output)
    by_version = {r.values["kernel.version"]: rows[r.run_id] for r in grid.runs}
    assert by_version["6.1"]["status"] == "ok"
    assert by_version["6.12"]["status"] == "failed" and "jbd2" in by_version["6.12"]["reason"]
    assert {v: row["extra"]["kernel"] for v, row in by_version.items()} == {
        "6.1": "6.1",
        "6.12": "6.12",
    }


@pytest.mark.parametrize(
    ("values", "needle"),
    [('["6.1", "5.0"]', "unknown kernel '5.0'"), ("[6.1, 6.12]", "as strings")],
)
def test_kernel_axis_values_are_modelled_versions_spelt_as_strings(tmp_path, values, needle):
    grid_file = write_grid(tmp_path, f'[axes]\n"kernel.version" = {values}\n')
    result = invoke(grid_file, "--list")
    assert result.exit_code == 2
    assert "axes.kernel.version" in result.stderr and needle in result.stderr


# --------------------------------------------------------------------------- width


def test_sweep_tables_are_readable_at_80_columns_and_wide_on_request(tmp_path):
    """At 80 columns the summary and --list split into tables that repeat the key columns;
    --wide prints one table with every column; nothing is ever cut to "…"."""
    grid_file = write_grid(tmp_path, AXES + '"workload.seed" = {range = [1, 2]}\n')
    grid = sw.load_grid(grid_file)
    output = tmp_path / "out.csv"
    narrow = cli_invoke("sweep", grid_file, "-o", output, env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert "…" not in narrow.stdout and all(len(line) <= 80 for line in lines)
    columns = ("migrated", "rebound", "written back", "write I/Os", "simulated time", "spread")
    for column in columns:
        assert column in narrow.stdout
    rows, _ = sw.existing_rows(grid, output)
    for group in sw.summarize(grid, rows):  # every mean is in some table (the seeds averaged)
        for column in ("migrated", "writeback_ios"):
            mean = group.mean(column)
            assert (f"{mean:,.0f}" if mean == int(mean) else f"{mean:,.1f}") in narrow.stdout
    assert "(continued)" in narrow.stdout

    listed = cli_invoke("sweep", grid_file, "-o", output, "--list", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    for run in grid.runs:  # each run id twice: once per table
        assert listed.stdout.count(run.run_id) == 2
    assert "workload.seed" in listed.stdout and "…" not in listed.stdout

    for env in ({"COLUMNS": "80"}, {}):  # a terminal's width, or a pipe
        wide = cli_invoke("sweep", grid_file, "-o", output, "--resume", "--wide", env=env)
        assert wide.returncode == 0, wide.stderr
        assert "…" not in wide.stdout and "(continued)" not in wide.stdout
        (head,) = [line for line in wide.stdout.splitlines() if "simulated time" in line]
        for column in ("workload.dirty", "remove.strategy", "ok", *columns):
            assert column in head


# --------------------------------------------------------------------------- damaged results


def test_a_damaged_results_file_is_one_line_never_a_traceback(tmp_path):
    """Random bit flips, truncations and zeroed ranges of a results file: --list (and
    --resume) refuse each with one line naming the file, exit 2, never a traceback; only a
    cut exactly at the end of a line is a whole file with fewer rows (as a kill leaves it)."""
    grid_file = write_grid(tmp_path)
    good = tmp_path / "good.csv"
    assert cli_invoke("sweep", grid_file, "-o", good).returncode == 0
    data = good.read_bytes()
    assert sw.FORMAT.encode() in data
    refused = 0
    for trial, (kind, at, damaged) in enumerate(damaged_copies(data)):
        path = tmp_path / f"bad{trial}.csv"
        path.write_bytes(damaged)
        proc = cli_invoke("sweep", grid_file, "-o", path, "--list")
        if kind == 1 and (at == 0 or data[at - 1] == ord("\n")):
            assert proc.returncode == 0, proc.stderr  # whole lines: the runs without rows rerun
            continue
        assert proc.returncode == 2, (trial, kind, at, proc.stdout[-300:])
        assert "Traceback" not in proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("hotremove: error: ") and str(path) in line
        refused += 1
    assert refused >= 35


def test_resume_refuses_a_damaged_row_before_running_anything(tmp_path):
    grid_file = write_grid(tmp_path)
    output = tmp_path / "out.csv"
    assert cli_invoke("sweep", grid_file, "-o", output).returncode == 0
    good = output.read_bytes()
    lines = good.split(b"\n")
    lines[2] = lines[2].replace(b",true,", b",fals,", 1)  # one row's cell changed in place
    output.write_bytes(b"\n".join(lines))
    before = output.read_bytes()
    proc = cli_invoke("sweep", grid_file, "-o", output, "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"hotremove: error: {output}: line 3 is damaged (it fails its checksum)"
    ]
    assert output.read_bytes() == before
    # a cut last row (a truncated file): --list names it, --resume drops it and reruns its run
    output.write_bytes(good[:-40])
    listed = cli_invoke("sweep", grid_file, "-o", output, "--list")
    assert listed.returncode == 2
    assert f"{output}: line 5 is cut short" in listed.stderr
    resumed = cli_invoke("sweep", grid_file, "-o", output, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 new, 3 already in" in resumed.stdout
    assert sorted(csv_ids(output)) == sorted(r.run_id for r in sw.load_grid(grid_file).runs)


# --------------------------------------------------------------------------- memory


def test_a_sweep_that_would_not_fit_in_memory_is_refused_before_any_work(tmp_path):
    """The grid's largest run, once in each worker at the same time, is checked against the
    memory available before anything runs; fewer workers fit, --force runs anyway."""
    from hotremove.sim.memguard import estimate_peak_bytes

    grid_file = write_grid(tmp_path)
    grid = sw.load_grid(grid_file)
    peak = max(estimate_peak_bytes(validate(run.scenario)) for run in grid.runs)
    output = tmp_path / "out.csv"
    between = {"HOTREMOVE_MEMORY_LIMIT": f"{(peak * 3 // 2) >> 20}MiB"}  # one run, not two

    proc = cli_invoke("sweep", grid_file, "-o", output, "-j", "2", env=between)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"hotremove: error: {grid_file}: run ")
    assert "in each of 2 workers at once" in line and "--force" in line
    assert not output.exists()

    one = cli_invoke("sweep", grid_file, "-o", output, "-j", "1", "-q", env=between)
    assert one.returncode == 0, one.stderr
    assert len(csv_ids(output)) == len(grid.runs)

    tiny = {"HOTREMOVE_MEMORY_LIMIT": "16MiB"}
    refused = cli_invoke("sweep", grid_file, "-o", output, "--overwrite", "-j", "1", env=tiny)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    forced = cli_invoke("sweep", grid_file, "-o", output, "--overwrite", "--force", env=tiny)
    assert forced.returncode == 0, forced.stderr
    assert len(csv_ids(output)) == len(grid.runs)
