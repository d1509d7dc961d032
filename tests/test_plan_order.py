"""``hotremove plan --remove``: the order to offline several blocks in that moves the fewest
pages. A block's pages go to the lowest free frames of the blocks still online (the buddy
allocator's order), so offlining a block before the one its pages would land in moves them
once instead of twice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hotremove.cli.snapshot import plan_command
from hotremove.plugins import load_plugins
from hotremove.realmachine.kpageflags import (
    KPF_ANON,
    KPF_BUDDY,
    KPF_LRU,
    KPF_SLAB,
    KPF_SWAPBACKED,
    KPF_UPTODATE,
    kpf,
)
from hotremove.realmachine.plan import plan
from hotremove.realmachine.removal import plan_removal
from hotremove.realmachine.snapshot import BlockInfo, Snapshot, SnapshotError
from hotremove.realmachine.synthesize import FsSpec

PPB = 1024
ANON = kpf(KPF_UPTODATE, KPF_LRU, KPF_ANON, KPF_SWAPBACKED)
FREE = kpf(KPF_BUDDY)


def blocks(used: list[int], zones: list[str] | None = None) -> Snapshot:
    """One 4 MiB block per entry, its first ``used[i]`` frames anonymous pages, the rest
    free."""
    flags = np.stack([np.where(np.arange(PPB) < n, ANON, FREE) for n in used]).astype(np.uint64)
    zones = zones or ["Movable"] * len(used)
    return Snapshot(
        block_size=PPB * 4096,
        blocks=[BlockInfo(i, "online", z) for i, z in enumerate(zones)],
        flags=flags,
        counts=np.zeros_like(flags, dtype=np.uint8),
    )


@pytest.fixture(scope="module")
def hooks():
    return load_plugins().hooks


def order_of(snap: Snapshot, hooks, remove=None):
    p = plan(snap, hooks, fs=FsSpec("ext2"))
    return plan_removal(p, remove)


def test_descending_saves_moving_the_first_blocks_pages_twice(hooks):
    # block 0 full, block 1 half full: ascending puts 512 of block 0's pages into block 1,
    # whose offline then moves them again
    o = order_of(blocks([PPB, PPB // 2, 0, 0, 0]), hooks, [0, 1])
    assert o.moved["ascending"] == 2 * PPB
    assert o.moved["descending"] == PPB + PPB // 2
    assert (o.best, o.name, o.saved) == ([1, 0], "descending", PPB // 2)
    assert o.per_block == [PPB // 2, PPB]


def test_the_cheapest_order_may_be_neither_ascending_nor_descending(hooks):
    # blocks 0 and 2 full, block 1 empty between them: whichever full block goes first fills
    # block 1, unless block 1 goes first
    o = order_of(blocks([PPB, 0, PPB, 0, 0, 0]), hooks, [0, 1, 2])
    assert o.moved["ascending"] == o.moved["descending"] == 3 * PPB
    assert o.best[0] == 1 and o.name == "listed"
    assert o.moved["best"] == 2 * PPB and o.saved == PPB
    assert o.tried == 6


def test_without_remove_the_movable_blocks_that_can_go_are_planned(hooks):
    """The whole of ZONE_MOVABLE goes (a DIMM): what no movable block can take goes to the
    kernel zones. Ascending fills blocks 3 and 4 with block 2's pages first."""
    zones = ["Normal", "Normal", "Movable", "Movable", "Movable"]
    o = order_of(blocks([0, 0, PPB, PPB // 2, 0], zones), hooks)
    assert o.blocks == [2, 3, 4]  # blocks 0 and 1 are ZONE_NORMAL
    assert o.moved["ascending"] == 3 * PPB
    assert (o.name, o.moved["best"], o.short) == ("descending", PPB + PPB // 2, 0)


def test_a_block_that_cannot_go_is_left_out(hooks):
    snap = blocks([PPB, PPB // 2, 0, 0])
    snap.flags[1, 600] = kpf(KPF_SLAB)
    o = order_of(snap, hooks, [0, 1, 2])
    assert o.left_out == [1]
    assert o.blocks == [0, 2]


def test_unknown_block_is_a_one_line_error(hooks):
    with pytest.raises(SnapshotError, match=r"--remove: memory block 9 is not in the snapshot"):
        order_of(blocks([PPB, 0]), hooks, [0, 9])


def test_plan_cli_recommends_the_order(tmp_path):
    path = tmp_path / "snap.npz"
    blocks([PPB, PPB // 2, 0, 0, 0]).save(path)
    runner = CliRunner()
    text = runner.invoke(plan_command, [str(path), "--fs", "ext2", "--remove", "0-1"])
    assert text.exit_code == 0, text.output
    assert "ascending moves 2,048 pages, descending 1,536" in text.output
    assert "fewest: descending (1, 0): 1,536 pages, 512 fewer than ascending" in text.output
    out = runner.invoke(plan_command, [str(path), "--fs", "ext2", "--remove", "0,1", "--json"])
    order = json.loads(out.output)["order"]
    assert order["best"] == [1, 0] and order["saved_over_ascending"] == PPB // 2
    bad = runner.invoke(plan_command, [str(path), "--remove", "1-x"])
    assert bad.exit_code == 2 and "--remove: '1-x' is not a block number or range" in bad.output
