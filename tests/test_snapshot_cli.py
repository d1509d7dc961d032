"""`hotremove plan` and `hotremove run --snapshot` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import invoke as hotremove

DATA = Path(__file__).parent / "data"


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
