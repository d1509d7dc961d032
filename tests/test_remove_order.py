"""One ``offline_pages`` call per memory block, in ``remove.order``: the kernel offlines a block
per write to ``memoryN/state``, and the allocator hands the first block's pages frames in the
blocks still online — the next one to go included, whose offline moves them again."""

from __future__ import annotations

import json

import pytest

from hotremove.errors import ScenarioError
from hotremove.model.memory import OFFLINE, ONLINE
from hotremove.scenario import validate

from .conftest import invoke

BLOCK_PAGES = 2048  # 8 MiB blocks


def two_blocks(order: str = "ascending", blocks=(0, 1), **workload) -> dict:
    """ext2 page cache filling block 0 and half of block 1 (3,072 pages, placement fill)."""
    return {
        "memory": {"size": "32MiB", "block_size": "8MiB"},
        "filesystem": [
            {"name": "data", "type": "ext2", "size": "16MiB", "files": 96, "file_size": "128KiB"}
        ],
        "workload": {"seed": 5, "dirty": 0.3, "placement": "fill", **workload},
        "remove": {"blocks": list(blocks), "order": order},
    }


def page_frames(built) -> list[int]:
    return sorted(p.pfn for m in built.machine.mappings for p in m.i_pages.values())


def test_ascending_moves_the_first_blocks_pages_again_when_the_next_block_goes(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(validate(two_blocks("ascending")))
    result = hotremove_offline(built)
    first, second = result.per_block
    assert (first.block, second.block) == (0, 1)
    # block 0's 2,048 pages: 1,024 into block 1's free half, 1,024 into block 2; block 1's
    # offline then moves its own 1,024 and the 1,024 that just arrived
    assert first.migrated == BLOCK_PAGES
    assert second.migrated == BLOCK_PAGES
    assert result.migrated == 2 * BLOCK_PAGES == first.migrated + second.migrated
    assert result.offlined and first.offlined and second.offlined
    frames = page_frames(built)
    assert len(frames) == 3 * BLOCK_PAGES // 2
    assert all(pfn >= 2 * BLOCK_PAGES for pfn in frames), "every page left blocks 0 and 1"
    assert built.machine.memory.block_state[:2] == [OFFLINE, OFFLINE]
    assert hotremove_verify(built).ok


def test_descending_moves_every_page_once(hotremove_build, hotremove_offline, hotremove_verify):
    built = hotremove_build(validate(two_blocks("descending")))
    result = hotremove_offline(built)
    assert [b.block for b in result.per_block] == [1, 0]
    assert [b.migrated for b in result.per_block] == [BLOCK_PAGES // 2, BLOCK_PAGES]
    assert result.migrated == 3 * BLOCK_PAGES // 2  # the page cache, once
    assert result.offlined
    # block 0's files are first seen by the second call: they take the batched path as well
    assert [b.batched for b in result.per_block] == [b.migrated for b in result.per_block]
    assert hotremove_verify(built).ok


def test_listed_order_is_the_order_written(hotremove_build, hotremove_offline):
    built = hotremove_build(validate(two_blocks("listed", blocks=(1, 0))))
    result = hotremove_offline(built)
    assert result.blocks == [1, 0]
    assert [b.block for b in result.per_block] == [1, 0]
    assert result.migrated == 3 * BLOCK_PAGES // 2


def test_a_later_block_that_fails_leaves_the_earlier_ones_offline(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """sysfs writes are independent: block 1 cannot be isolated (unmovable pages), the
    block offlined before it stays offline, the pages moved into block 1 stay there."""
    scenario = validate(two_blocks("ascending", unmovable=3, unmovable_blocks=[1]))
    built = hotremove_build(scenario)
    result = hotremove_offline(built)
    first, second = result.per_block
    assert first.offlined and not second.offlined
    assert second.failed == 3 and second.migrated == 0
    assert not result.offlined
    assert result.reason.startswith("block 1: failure to isolate range")
    memory = built.machine.memory
    assert memory.block_state[:2] == [OFFLINE, ONLINE]
    in_block_1 = [pfn for pfn in page_frames(built) if memory.block_of(pfn) == 1]
    assert len(in_block_1) == BLOCK_PAGES - 3  # its own pages and block 0's, minus the 3
    assert hotremove_verify(built).ok


def test_a_block_that_fails_first_does_not_stop_the_next(hotremove_build, hotremove_offline):
    scenario = validate(two_blocks("listed", blocks=(1, 0), unmovable=3, unmovable_blocks=[1]))
    built = hotremove_build(scenario)
    result = hotremove_offline(built)
    assert [(b.block, b.offlined) for b in result.per_block] == [(1, False), (0, True)]
    assert built.machine.memory.block_state[:2] == [OFFLINE, ONLINE]


def test_the_timeout_stops_one_blocks_offline_and_the_next_block_still_goes(
    hotremove_build, hotremove_offline
):
    """remove.timeout is per write (the guest's ``timeout`` around each): on 6.12, block 0's
    data=journal pages are held by jbd2 until the signal; block 1 then offlines."""
    fs = {"size": "16MiB", "file_size": "128KiB"}
    scenario = validate(
        {
            "kernel": {"version": "6.12", "dirty_writeback_centisecs": 0},
            "memory": {"size": "32MiB", "block_size": "8MiB"},
            "filesystem": [
                {"name": "j", "type": "ext4", "options": ["data=journal"], "files": 64, **fs},
                {"name": "e", "type": "ext2", "files": 16, **fs},
            ],
            "workload": {"seed": 2, "dirty": 0.3, "placement": "fill"},
            "remove": {"blocks": [0, 1], "timeout": 5},
        }
    )
    built = hotremove_build(scenario)
    result = hotremove_offline(built)
    first, second = result.per_block
    assert not first.offlined and "signal backoff (-EINTR): stopped after 5 s" in first.reason
    assert second.offlined
    assert result.reason.startswith("block 0: signal backoff")


def test_remove_order_must_be_known():
    with pytest.raises(ScenarioError, match=r"^remove\.order: must be 'ascending'"):
        validate(two_blocks("random"))


def test_run_json_reports_each_block_and_keeps_the_totals(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(
        "\n".join(
            [
                '[memory]\nsize = "32MiB"\nblock_size = "8MiB"',
                '[[filesystem]]\nname = "data"\ntype = "ext2"\nsize = "16MiB"\nfiles = 96',
                'file_size = "128KiB"',
                '[workload]\nseed = 5\nplacement = "fill"',
                '[remove]\nblocks = [1, 0]\norder = "ascending"',
            ]
        )
    )
    proc = invoke("run", path, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["order"] == "ascending" and out["blocks"] == [0, 1]
    per_block = out["per_block"]
    assert [b["block"] for b in per_block] == [0, 1]
    for key in ("offlined", "migrated", "failed", "reason", "simulated_seconds"):
        assert all(key in b for b in per_block), key
    assert out["migrated"] == sum(b["migrated"] for b in per_block) == 2 * BLOCK_PAGES
    assert out["simulated_seconds"] == pytest.approx(sum(b["simulated_seconds"] for b in per_block))
