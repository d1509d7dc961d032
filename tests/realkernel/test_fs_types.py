"""The filesystem types beyond ext2/3/4 on Debian's real kernels: one small ``kernel diff``
each (64 files of 128 KiB, 30 % of the pages dirtied, the DIMM's first block offlined; TCG:
about a minute a boot), simulator and guest agreeing metric by metric.

* vfat on 5.10: ``fat_aops`` has no migration callback, so the offline writes every dirty
  page back (the fallback) — and on 7.2, ``buffer_migrate_folio`` (ee649af0d9a6, 6.2) moves
  them with their buffers, nothing written (kernel-reference.md, "Observed on real kernels");
* XFS on 5.10: no buffer_heads, ``iomap_migrate_page`` moves the dirty pages as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.realkernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "realkernel"


def diff(name: str, version: str) -> dict[str, dict[str, Any]]:
    """``hotremove kernel diff NAME --kernel VERSION --json``: the rows, by metric."""
    argv = ["diff", str(EXAMPLES / f"{name}.toml"), "--kernel", version, "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "hotremove.cli.kernel", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    rows = {row["metric"]: row for row in out["kernels"][version]["rows"]}
    disagree = {m: r for m, r in rows.items() if not r["agree"]}
    assert not disagree and out["agree"] and result.returncode == 0, disagree
    assert rows["offlined"]["real"] is True and rows["verify.ok"]["real"] is True
    assert rows["verify.files_checked"]["real"] == 64
    return rows


@pytest.mark.parametrize(("version", "written"), [("5.10", True), ("7.2", False)])
def test_vfat_is_written_back_before_6_2_and_rebound_after(version: str, written: bool) -> None:
    rows = diff("vfat-small", version)
    real = rows["written_back"]["real"]
    assert (real > 500) if written else (real == 0), rows["written_back"]


def test_xfs_dirty_pages_move_without_io_on_5_10() -> None:
    rows = diff("xfs-small", "5.10")
    assert rows["written_back"]["real"] == 0 and rows["written_back"]["simulated"] == 0
