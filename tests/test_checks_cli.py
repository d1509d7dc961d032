"""`--checks` and `explore` through the command line: the seed strategy's sleeping-in-atomic
bug stops a strict run; the default ext2 strategy runs clean under the same checks."""

from __future__ import annotations

import json

from .conftest import invoke as hotremove


def test_seed_strategy_stops_a_strict_run_with_the_kernels_message():
    proc = hotremove("demo", "--strategy", "ext2-seed2004", "--checks", "strict")
    assert proc.returncode == 1
    assert "BUG: sleeping function called from invalid context" in proc.stderr
    assert "remap_move_buffer_ext2" in proc.stderr
    assert proc.stderr.strip().endswith("stopped at the first lock violation (--checks strict)")


def test_seed_strategy_fails_an_on_run_with_violations_in_the_report():
    proc = hotremove("demo", "--strategy", "ext2-seed2004", "--checks", "on", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["lock_violations"] and not report["ok"]
    assert report["lock_violations"][0]["kind"] == "sleep_in_atomic"


def test_default_strategies_are_clean_under_lockdep():
    proc = hotremove("demo", "--checks", "on", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["lock_violations"] == [] and report["ok"]


def test_explore_is_registered():
    proc = hotremove("explore", "--help")
    assert proc.returncode == 0 and "--schedules" in proc.stdout
