"""The benchmark command runs on a small size and reports every figure (not a timing test)."""

from __future__ import annotations

import json

import pytest

from hotremove.sim.bench import bench_scenario
from hotremove.sim.memguard import estimate_peak_bytes

from .conftest import hotremove, invoke
from .test_cli import assert_one_line_error


def test_bench_json_has_the_figures(tmp_path):
    proc = invoke(
        *("bench", "--size", "16MiB", "--checks", "both", "--scaling", "8MiB,16MiB", "--json"),
        env={"HOTREMOVE_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["ok"] is True
    runs = {(r["strategy"], r["checks"]): r for r in out["runs"]}
    assert set(runs) == {(s, c) for s in ("auto", "writeback") for c in ("off", "on")}
    for run in runs.values():
        for key in (
            "pages_per_second",
            "offline_seconds",
            "build_seconds",
            "verified",
            "metadata_bytes_per_page",
            "peak_rss_bytes",
            "simulated_seconds_by_preset",
            "image_copy_seconds",
            "verify_seconds",
            "whole_seconds",
            "plain_copy_seconds",
            "offline_over_plain_copy",
            "kernel_pages_per_second",
            "offline_over_kernel",
            "peak_rss_over_ram",
            "peak_rss_over_in_use",
        ):
            assert key in run, key
        assert run["verified"] and run["offlined"] and run["pages"] == 4096
        assert run["plain_copy_seconds"] > 0
        assert run["offline_over_plain_copy"] == run["offline_seconds"] / run["plain_copy_seconds"]
        in_use = run["pages_in_use"] * 4096
        assert run["peak_rss_over_in_use"] == run["peak_rss_bytes"] / in_use
    assert runs[("auto", "off")]["writeback_ios"] == 0, "rebinding issues no write"
    assert runs[("auto", "off")]["batched_pages"] > 0, "ext2 page cache takes the batched path"
    assert runs[("writeback", "off")]["writeback_ios"] > 0
    assert set(out["writeback_over_auto"]) == {"ide-2004", "sata-ssd", "nvme"}
    assert out["writeback_over_auto"]["ide-2004"] > 100
    assert out["checks_slowdown"] > 0
    assert out["fallback_pages_per_second"] == runs[("writeback", "off")]["pages_per_second"]
    assert [r["pages"] for r in out["scaling"]["scaling"]] == [2048, 4096]
    assert list(tmp_path.joinpath("cache", "images").glob("*.img")), "images are cached"


def test_bench_refuses_an_unknown_strategy_before_any_work():
    proc = invoke("bench", "--size", "8MiB", "--strategy", "teleport")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("hotremove: error: --strategy: unknown strategy 'teleport'")


def test_bench_shows_its_progress_on_stderr(tmp_path):
    proc = invoke(
        "bench",
        "--size",
        "8MiB",
        "--strategy",
        "auto",
        "--checks",
        "off",
        "--cache",
        tmp_path,
        "--json",
        "--progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "bench" in proc.stderr and "1/1" in proc.stderr
    assert json.loads(proc.stdout)["runs"][0]["strategy"] == "auto"


@pytest.mark.parametrize("wide", [False, True], ids=["80-columns", "wide"])
def test_bench_table_is_readable_at_80_columns_and_whole_with_wide(tmp_path, wide):
    """At 80 columns every figure is there, in tables that repeat strategy and checks;
    ``--wide`` puts every column in one table (its header is one line)."""
    args = ["bench", "--size", "8MiB", "--strategy", "auto", "--cache", str(tmp_path)]
    proc = invoke(*args, *(["--wide"] if wide else []), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    headers = ("pages/s", "× copy", "× kernel", "whole s", "÷ in use", "meta B/page", "verified")
    assert all(h in proc.stdout for h in headers)
    header_lines = [line for line in proc.stdout.splitlines() if "strategy" in line]
    if wide:
        assert len(header_lines) == 1 and all(h in header_lines[0] for h in headers)
    else:
        assert len(header_lines) > 1, "split into tables that each name the run"
        assert all(len(line) <= 80 for line in proc.stdout.splitlines())
    assert "plain copy of the region's bytes" in proc.stdout
    assert "pages/s (move_pages(2), 4 KiB pages" in " ".join(proc.stdout.split())
    assert "per-step checks" not in proc.stdout, "one check mode: no ratio to give"


def test_bench_refuses_a_size_that_would_not_fit_in_memory(tmp_path):
    limited = {"HOTREMOVE_MEMORY_LIMIT": "256MiB"}
    proc = invoke("bench", "--size", "8MiB", "--scaling", "1GiB", "--json", env=limited)
    assert_one_line_error(proc, "memory.size: this run needs about", "--force")
    forced = invoke(
        *("bench", "--size", "8MiB", "--strategy", "auto", "--cache", str(tmp_path)),
        *("--json", "--force"),
        env={"HOTREMOVE_MEMORY_LIMIT": "8MiB"},
    )
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["ok"]


def test_the_memory_estimate_covers_a_measured_run(tmp_path):
    """A real process's peak RSS (VmHWM) for a 128 MiB region stays under what the guard
    estimates, and the estimate is not so loose that it refuses what fits."""
    proc = hotremove(
        *("bench", "--size", "128MiB", "--strategy", "auto", "--cache", str(tmp_path), "--json"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [run] = json.loads(proc.stdout)["runs"]
    estimate = estimate_peak_bytes(bench_scenario(128 << 20, 0.3, False, "auto"))
    assert run["peak_rss_bytes"] <= estimate < 3 * run["peak_rss_bytes"]


def test_bench_repeat_reports_medians_and_ranges(tmp_path):
    proc = invoke(
        *("bench", "--size", "8MiB", "--strategy", "auto", "--repeat", "3"),
        *("--cache", str(tmp_path), "--json"),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [row] = out["runs"]
    assert row["samples"] == 3 and len(out["samples"]) == 3
    speeds = sorted(r["pages_per_second"] for r in out["samples"])
    assert row["pages_per_second"] == speeds[1], "the median of three"
    assert row["range"]["pages_per_second"] == [speeds[0], speeds[2]]
    assert row["verified"] and all(r["verified"] for r in out["samples"])


def test_first_run_is_a_whole_uncached_run_beside_a_cached_one(tmp_path):
    from hotremove.scenario import validate
    from hotremove.sim.firstrun import FIRST_RUN, run_first

    small = {
        **FIRST_RUN,
        "memory": {"size": "64MiB", "block_size": "8MiB"},
        "filesystem": [{**FIRST_RUN["filesystem"][0], "size": "32MiB", "files": 64}],
        "remove": {"blocks": [0, 1]},
    }
    seen = []
    out = run_first(2, seen.append, validate(small))
    assert out["ok"] is True
    assert seen == ["first run, uncached", "first run, cached"] * 2
    for kind in ("uncached", "cached"):
        run = out["runs"][kind]
        assert run["verified"] and run["offlined"]
        assert len(out["samples"][kind]) == 2
        lo, hi = run["whole_seconds_range"]
        assert lo <= run["whole_seconds"] <= hi
        assert run["whole_seconds"] >= run["build_seconds"] + run["verify_seconds"]
