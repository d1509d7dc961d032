"""The benchmark command runs on a small size and reports every figure (not a timing test)."""

from __future__ import annotations

import json

from .conftest import invoke


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
        ):
            assert key in run, key
        assert run["verified"] and run["offlined"] and run["pages"] == 4096
    assert runs[("auto", "off")]["writeback_ios"] == 0, "rebinding issues no write"
    assert runs[("auto", "off")]["batched_pages"] > 0, "ext2 page cache takes the batched path"
    assert runs[("writeback", "off")]["batched_pages"] == 0, "the fallback goes page by page"
    assert runs[("writeback", "off")]["writeback_ios"] > 0
    assert set(out["writeback_over_auto"]) == {"ide-2004", "sata-ssd", "nvme"}
    assert out["writeback_over_auto"]["ide-2004"] > 100
    assert out["checks_slowdown"] > 0
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
