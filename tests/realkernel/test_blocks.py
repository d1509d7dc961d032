"""Two memory blocks offlined one ``offline_pages`` call each, on a real kernel: the first
block's pages land in the second (the allocator hands out the lowest free frames of
ZONE_MOVABLE), whose offline moves them again — and the simulator says so block by block."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotremove.cli.kernel import simulate
from hotremove.realkernel.diff import all_agree, compare
from hotremove.realkernel.run import run_in_guest
from hotremove.scenario import validate

pytestmark = pytest.mark.realkernel

#: 160 files of 512 KiB (20,480 pages) in memory32, memory33 empty, a 384 MiB DIMM (three
#: blocks: what the two removed blocks held must fit in the third, the simulated machine has
#: no boot memory to fall back to); nothing dirtied (no write()s to replay: a shorter boot)
SCENARIO = {
    "memory": {"size": "384MiB", "block_size": "128MiB"},
    "filesystem": [
        {
            "name": "data",
            "type": "ext2",
            "block_size": 4096,
            "size": "128MiB",
            "files": 160,
            "file_size": "512KiB",
        }
    ],
    "workload": {"seed": 1, "dirty": 0.0, "placement": "fill"},
    "remove": {"blocks": [0, 1], "order": "ascending", "timeout": 60},
    "kernel": {"dirty_writeback_centisecs": 0, "dirty_expire_centisecs": 360000},
}


def test_ascending_offlines_move_the_first_blocks_pages_twice_on_612(tmp_path: Path) -> None:
    scenario = validate(SCENARIO)
    real = run_in_guest(scenario, "6.12", workdir=tmp_path)
    d = real.as_dict()
    first, second = d["per_block"]
    assert (first["memory_block"], second["memory_block"]) == (32, 33)
    assert first["offlined"] and second["offlined"] and d["verify"]["ok"]
    assert second["before"]["file"] == 0  # memory33 held no page cache of its own
    # memory32's pages went to the lowest free frames of ZONE_MOVABLE: memory33's, whose
    # offline moved them all again
    assert first["migrated"] > 20_000 and second["migrated"] > 20_000, d["per_block"]
    sim = simulate(scenario, "6.12")
    rows = compare(sim, d)
    assert all_agree(rows), [r for r in rows if not r["agree"]]
    assert [r["metric"] for r in rows if r["metric"].endswith(".migrated")] == [
        "block 0.migrated",
        "block 1.migrated",
    ]
