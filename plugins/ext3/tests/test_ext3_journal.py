"""ext3 through its real entry point: ordered/writeback rebinding, data=journal's _norefs
refusal until the simulated jbd2 commits and checkpoints, buffers locked by I/O."""

from __future__ import annotations

import pytest

from hotremove.model.buffer_head import BH_JBD, BH_Lock, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import (
    assert_clean_result,
    rebinding_problems,
    small_scenario,
    snapshot_region,
)
from hotremove_ext3.journal import JournalHead


def test_entry_point_claims_the_three_ext3_tables(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["ext3"]
    assert info.error is None and info.dist == "hotremove-ext3"
    assert sorted(info.aops) == [
        "ext3_journalled_aops",
        "ext3_ordered_aops",
        "ext3_writeback_aops",
    ]


@pytest.mark.parametrize("data_mode", ["ordered", "writeback"])
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ordered_and_writeback_rebind_without_io(
    data_mode, mode, hotremove_build, hotremove_offline, hotremove_verify
):
    scenario = small_scenario(
        {"type": "ext3", "block_size": 1024, "options": [f"data={data_mode}"]}, mode=mode
    )
    built = hotremove_build(scenario)
    shots = snapshot_region(built, [1])
    assert any(s.flags & PG_dirty for s in shots)

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert built.machine.io.write_requests == 0
    assert built.machine.io.journal_requests == 0
    assert rebinding_problems(built, shots) == []
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_ordered_journal_heads_travel_with_rebound_buffers(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(small_scenario({"type": "ext3", "options": ["data=ordered"]}))
    held = [
        (bh, bh.b_private)
        for s in snapshot_region(built, [1])
        for bh, _, _ in s.buffers
        if bh.b_state & BH_JBD
    ]
    assert held, "ordered-mode dirty data buffers carry journal heads"
    assert all(isinstance(jh, JournalHead) and bh.b_count == 1 for bh, jh in held)

    assert_clean_result(hotremove_offline(built))

    for bh, jh in held:
        assert bh.b_private is jh and jh.bh == bh and bh.b_state & BH_JBD
        assert built.machine.memory.block_of(bh.b_page.pfn) != 1
    # the journal's commit now writes the data from the buffers' new pages
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_data_journal_refused_until_checkpoint_then_moves(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario({"type": "ext3", "block_size": 2048, "options": ["data=journal"]})
    )
    journal = built.machine.superblocks[0].s_journal
    shots = snapshot_region(built, [1])
    held = [s for s in shots if any(state & BH_JBD for _, _, state in s.buffers)]
    assert held, "journalled dirty buffers are held by the journal"

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.retries["-EAGAIN"] >= len(held), "busy buffers must be refused first"
    assert journal.commits >= 1 and journal.checkpoints >= 1
    assert built.machine.io.journal_requests >= 1, "commit writes the log"
    assert built.machine.io.write_requests >= 1, "checkpoint writes blocks home"
    assert result.per_aops["ext3_journalled_aops"].strategy == "buffer_migrate_folio_norefs"
    assert result.per_aops["ext3_journalled_aops"].migrated == len(shots)
    for shot in held:
        page = shot.mapping.i_pages[shot.index]
        assert page.flags & PG_private and not page.flags & PG_dirty
        assert all(not bh.b_state & BH_JBD and bh.b_count == 0 for bh in page_buffers(page))
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_buffer_locked_by_io_is_waited_for_in_sync_and_skipped_in_async(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario({"type": "ext3", "options": ["data=writeback"]}, mode="async")
    )
    shot = next(s for s in snapshot_region(built, [1]) if s.buffers)
    locked_bh = shot.buffers[0][0]
    locked_bh.b_state |= BH_Lock  # a commit's write is in flight on this buffer
    waited = []

    def io_completes(obj):
        waited.append(obj)
        obj.b_state &= ~BH_Lock  # end_buffer_write_sync
        return True

    built.machine.task.waiter = io_completes

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.retries["-EAGAIN"] >= 1, "async trylock fails and backs off"
    assert waited == [locked_bh], "a later sync pass sleeps on the buffer lock"
    assert locked_bh.b_page == shot.mapping.i_pages[shot.index]
    assert hotremove_verify(built).ok
