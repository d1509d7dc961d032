"""The simulator-vs-kernel table: each metric's stated tolerance decides agreement."""

from __future__ import annotations

from typing import Any

from hotremove.realkernel.diff import all_agree, compare, unmodelled_pages

SIM: dict[str, Any] = {
    "offlined": True,
    "migrated": 2048,
    "written_back": 0,
    "failed": [],
    "verify": {"ok": True, "files_checked": 64, "mismatches": []},
}
REAL: dict[str, Any] = {
    "offlined": True,
    "migrated": 2113,
    "other_pages_in_region": 72,
    "written_back": 0,
    "failed": 0,
    "held": 0,
    "verify": {"ok": True, "files_checked": 64, "mismatches": []},
}


def _rows(sim: dict[str, Any], real: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["metric"]: row for row in compare(sim, real)}


def test_agreeing_runs_agree_on_every_row() -> None:
    rows = compare(SIM, REAL)
    assert [r["metric"] for r in rows] == [
        "offlined",
        "migrated",
        "written_back",
        "held",
        "failed",
        "verify.ok",
        "verify.files_checked",
    ]
    assert all_agree(rows)
    assert all(r["tolerance"] for r in rows)


def test_migrated_tolerance_is_two_percent_plus_the_guests_own_pages() -> None:
    # 2 % of 2113 = 42.3, plus 72 own pages: 114 apart is the most that agrees
    assert _rows({**SIM, "migrated": 2113 - 114}, REAL)["migrated"]["agree"]
    assert not _rows({**SIM, "migrated": 2113 - 115}, REAL)["migrated"]["agree"]
    assert not _rows(SIM, {**REAL, "other_pages_in_region": 0})["migrated"]["agree"]


def test_page_cache_beyond_the_simulated_files_counts_as_unmodelled() -> None:
    """5.10, ext2-small: 2,112 page-cache pages in the block, the simulator's files have
    2,048 there; the 64 more (block-device metadata) and 80 own pages moved as well."""
    sim = {**SIM, "per_aops": {"ext2_aops": {"pages": 2048}, "anon": {"pages": 5}}}
    real = {**REAL, "migrated": 2184, "file_pages_in_region": 2112, "other_pages_in_region": 80}
    assert unmodelled_pages(sim, real) == 80 + 64
    assert _rows(sim, real)["migrated"]["agree"]
    # without the simulated pages to set them against, only the guest's own pages count
    assert unmodelled_pages(SIM, {**real, "file_pages_in_region": 0}) == 80
    assert not _rows(sim, {**real, "file_pages_in_region": 2048})["migrated"]["agree"]


def test_written_back_within_one_percent_or_eight_pages() -> None:
    assert _rows({**SIM, "written_back": 8}, REAL)["written_back"]["agree"]
    assert not _rows({**SIM, "written_back": 9}, REAL)["written_back"]["agree"]
    big = _rows({**SIM, "written_back": 3600}, {**REAL, "written_back": 3585})
    assert big["written_back"]["agree"]  # 15 apart, 1 % of 3600 is 36
    assert not _rows({**SIM, "written_back": 3600}, {**REAL, "written_back": 0})["written_back"][
        "agree"
    ]


def test_offlined_and_verify_are_exact_and_failures_compare_as_present_or_not() -> None:
    rows = _rows({**SIM, "offlined": False, "failed": [{"pfn": 1}]}, REAL)
    assert not rows["offlined"]["agree"]
    assert rows["failed"] == {
        "metric": "failed",
        "simulated": 1,
        "real": 0,
        "tolerance": "both zero or both non-zero (kernel: attempts, simulator: pages)",
        "agree": False,
    }
    both = _rows({**SIM, "failed": [{"pfn": 1}] * 3}, {**REAL, "failed": 372438})
    assert both["failed"]["agree"]
    rows = _rows(SIM, {**REAL, "verify": {"ok": False, "files_checked": 63}})
    assert not rows["verify.ok"]["agree"] and not rows["verify.files_checked"]["agree"]
    assert not all_agree(compare(SIM, {**REAL, "verify": None}))


def test_held_pages_within_ten_percent_or_sixteen() -> None:
    """6.12 data=journal with a small journal: the simulator's pages that never moved
    against the guest's page-cache pages left in the block after -EINTR."""
    sim = {**SIM, "offlined": False, "failed": [{"pfn": n} for n in range(1257)]}
    real = {**REAL, "offlined": False, "failed": 255420, "held": 1188}
    row = _rows(sim, real)["held"]
    assert (row["simulated"], row["real"], row["agree"]) == (1257, 1188, True)
    assert not _rows({**sim, "failed": [{"pfn": 0}] * 1400}, real)["held"]["agree"]
    assert _rows({**sim, "failed": [{"pfn": 0}] * 12}, {**real, "held": 0})["held"]["agree"]
    # an offlined simulation holds nothing, whatever it failed on the way
    assert _rows({**SIM, "failed": [{"pfn": 1}]}, REAL)["held"]["simulated"] == 0


def test_several_blocks_are_compared_block_by_block_in_the_simulators_order() -> None:
    """Two blocks (ascending): the guest reports each offline; block 1's guest pages are the
    ones in its last scan before its own offline (``prior``), moved-in ones included."""
    sim = {
        **SIM,
        "migrated": 65536,
        "per_block": [
            {"block": 0, "offlined": True, "migrated": 32768, "written_back": 0},
            {"block": 1, "offlined": True, "migrated": 32768, "written_back": 0},
        ],
    }
    real = {
        **REAL,
        "migrated": 65466,
        "per_block": [
            {
                "block": 0,
                "offlined": True,
                "migrated": 32726,
                "written_back": 0,
                "before": {"used": 32730, "file": 32689},
            },
            {
                "block": 1,
                "offlined": True,
                "migrated": 32740,
                "written_back": 0,
                "before": {"used": 15350, "file": 15311},
                "prior": {"used": 32762, "file": 32698},
            },
        ],
    }
    rows = _rows(sim, real)
    assert [m for m in rows if m.startswith("block")] == [
        "block 0.offlined",
        "block 0.migrated",
        "block 0.written_back",
        "block 1.offlined",
        "block 1.migrated",
        "block 1.written_back",
    ]
    assert all_agree(list(rows.values()))
    # 2 % of the larger count (33,473: 669.5) plus 64 guest pages: 733 apart agrees, 734 not
    far = {
        **sim,
        "per_block": [sim["per_block"][0], {**sim["per_block"][1], "migrated": 32740 + 733}],
    }
    assert _rows(far, real)["block 1.migrated"]["agree"]
    farther = {
        **sim,
        "per_block": [sim["per_block"][0], {**sim["per_block"][1], "migrated": 32740 + 734}],
    }
    assert not _rows(farther, real)["block 1.migrated"]["agree"]
    # a block the kernel did not offline is a disagreement of its own
    failed = {
        **real,
        "per_block": [real["per_block"][0], {**real["per_block"][1], "offlined": False}],
    }
    assert not _rows(sim, failed)["block 1.offlined"]["agree"]


def test_one_block_has_no_per_block_rows() -> None:
    one = {**SIM, "per_block": [{"block": 0, "offlined": True, "migrated": 2048}]}
    assert not any(r["metric"].startswith("block") for r in compare(one, REAL))
