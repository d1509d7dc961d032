"""generic_writeback through its real entry point: the fallback writes dirty pages out (one
request per run of adjacent dirty blocks), frees their buffers, then copies them."""

from __future__ import annotations

import pytest

from hotremove.model.buffer_head import BH_Dirty
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import assert_clean_result, small_scenario, snapshot_region


def expected_requests(shots) -> int:
    """One request per run of adjacent dirty blocks of each dirty page."""
    total = 0
    for shot in shots:
        blocks = sorted(b for _, b, state in shot.buffers if state & BH_Dirty)
        total += sum(1 for i, b in enumerate(blocks) if i == 0 or b != blocks[i - 1] + 1)
    return total


def test_entry_point_answers_last_for_everything(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["generic_writeback"]
    assert info.error is None and info.dist == "hotremove-generic-writeback"
    assert info.policies == ["writeback"]
    impls = hotremove_plugins.pm.hook.hotremove_migrate_strategy.get_hookimpls()
    assert impls[0].plugin_name == "generic_writeback" and impls[0].trylast


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ext4_dirty_pages_are_written_once_per_run(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario({"type": "ext4", "block_size": 1024}, dirty=0.6, mode=mode)
    )
    shots = snapshot_region(built, [1])
    dirty = [s for s in shots if s.flags & PG_dirty]
    assert dirty and len(dirty) < len(shots)
    want = expected_requests(dirty)
    assert want > len(dirty), "some pages must have several runs of dirty blocks"

    result = hotremove_offline(built)

    assert_clean_result(result)
    stats = result.per_aops["ext4_da_aops"]
    assert stats.plugin == "generic_writeback" and stats.strategy == "fallback_migrate_folio"
    assert stats.written_back == len(dirty)
    assert built.machine.io.write_requests == stats.write_requests == want
    assert built.machine.io.blocks_written == sum(
        1 for s in dirty for _, _, state in s.buffers if state & BH_Dirty
    )
    if mode == "async":
        assert result.retries["-EBUSY"] == len(dirty), "async may not write: -EBUSY first"
    for shot in shots:  # buffers were dropped, pages arrive clean
        page = shot.mapping.i_pages[shot.index]
        assert not page.flags & (PG_private | PG_dirty)
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_forced_writeback_policy_overrides_ext2_rebinding(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(small_scenario({"type": "ext2"}, strategy="writeback"))
    dirty = [s for s in snapshot_region(built, [1]) if s.flags & PG_dirty]

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.per_aops["ext2_aops"].plugin == "generic_writeback"
    assert result.per_aops["ext2_aops"].rebound == 0
    assert built.machine.io.write_requests == expected_requests(dirty) > 0
    assert hotremove_verify(built).ok


def test_journal_held_buffers_wait_for_commit_under_forced_writeback(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario({"type": "ext3", "options": ["data=ordered"]}, strategy="writeback")
    )
    result = hotremove_offline(built)
    assert_clean_result(result)
    # written out, but jbd2's journal_head pins the buffers until the commit drops it
    assert result.retries["-EAGAIN"] >= 1
    assert built.machine.superblocks[0].s_journal.commits >= 1
    assert hotremove_verify(built).ok
