"""Ctrl-C during the offline: the engine backs off at a page boundary (the kernel's "signal
backoff"), rolls the range back, verifies, reports what it did and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_sigint_during_the_offline_rolls_back_and_reports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTREMOVE_")}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hotremove", "demo", "--json", "--no-progress"),
            *("--log-level", "debug", "--log-format", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # one debug event per page: wait for the first
        line = proc.stderr.readline()
        if not line or '"page_migrated"' in line:
            break
    # not reading stderr any more: the run soon blocks on the full pipe, mid-offline
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True and report["offlined"] is False
    assert report["reason"].startswith("signal backoff (-EINTR)")
    assert report["migrated"] > 0, "it stopped part-way, at a page boundary"
    assert report["verify"]["ok"], "rolled back without losing a byte"
    assert '"interrupt_requested"' in stderr


def test_fault_flags_roll_back_and_still_verify() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotremove",
            "demo",
            "--json",
            "--strategy",
            "writeback",
            "--fault",
            "writeback_eio=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert not report["offlined"] and "-EIO" in report["reason"]
    assert report["verify"]["ok"] and report["checks"] == []


def test_bad_fault_flag_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hotremove", "demo", "--fault", "no_such_fault=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hotremove: error: faults.no_such_fault: unknown key"
