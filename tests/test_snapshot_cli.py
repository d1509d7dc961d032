"""`hotremove plan` and `hotremove run --snapshot` through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"


def hotremove(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotremove", *args], capture_output=True, text=True, timeout=300
    )


def test_plan_prediction_matches_run_on_a_snapshot_block():
    snapshot = str(DATA / "snapshot-synthetic.npz")
    plan = hotremove("plan", snapshot, "--fs", "ext2", "--json")
    assert plan.returncode == 0, plan.stderr
    blocks = json.loads(plan.stdout)["blocks"]
    block = next(b for b in blocks if b["offlinable"] and b["predicted"]["rebound"])
    run = hotremove(
        "run", "--snapshot", snapshot, "--blocks", str(block["block"]), "--fs", "ext2", "--json"
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["offlined"] and report["verify"]["ok"]
    for key in ("migrated", "rebound", "written_back"):
        assert report[key] == block["predicted"][key], key
    assert len(report["failed"]) == block["predicted"]["failed"]


def test_run_snapshot_bad_input_is_one_line():
    for args in (
        ["run", "--snapshot", "/nonexistent.npz", "--blocks", "1"],
        ["run", "--snapshot", str(DATA / "snapshot-synthetic.npz")],
        ["run"],
    ):
        proc = hotremove(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
