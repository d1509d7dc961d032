"""ext2 through its real entry point, real images and the real engine: rebinding, no I/O."""

from __future__ import annotations

import pytest

from hotremove import hookimpl
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO
from hotremove.model.buffer_head import BH_Dirty, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import (
    assert_clean_result,
    cached_pages_before,
    rebinding_problems,
    small_scenario,
)


def test_entry_point_claims_ext2_aops(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["ext2"]
    assert info.error is None
    assert info.dist == "hotremove-ext2"
    assert sorted(info.aops) == ["ext2_aops", "ext2_nobh_aops"]
    assert hotremove_plugins.aops_owner["ext2_aops"] == "ext2"


@pytest.mark.parametrize("block_size", [1024, 4096])
@pytest.mark.parametrize("mode", ["async", "sync_light", "sync"])
def test_dirty_partial_buffers_rebound_without_io(
    block_size, mode, hotremove_build, hotremove_offline, hotremove_verify
):
    scenario = small_scenario(
        {"type": "ext2", "block_size": block_size}, dirty=0.6, dirty_buffers="partial", mode=mode
    )
    built = hotremove_build(scenario)
    shots = cached_pages_before(built, [1])
    dirty = [s for s in shots if s.flags & PG_dirty]
    assert dirty and shots, "the removed block must hold clean and dirty page-cache pages"
    if block_size == 1024:  # partial: some dirty pages keep clean buffers
        assert any(any(not state & BH_Dirty for _, _, state in s.buffers) for s in dirty), (
            "expected partially dirty pages"
        )

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert built.machine.io.write_requests == 0, "rebinding must not write"
    assert result.per_aops["ext2_aops"].rebound == len(shots)
    assert result.per_aops["ext2_aops"].strategy == "buffer_migrate_folio"
    assert rebinding_problems(built, shots) == []
    for shot in dirty:  # PG_dirty travelled with the page
        assert shot.mapping.i_pages[shot.index].flags & PG_dirty
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()
    assert verdict.files_checked == 16


def test_nobh_pages_move_by_plain_copy(hotremove_build, hotremove_offline, hotremove_verify):
    built = hotremove_build(small_scenario({"type": "ext2", "options": ["nobh"]}, dirty=0.5))
    shots = cached_pages_before(built, [1])
    assert shots and all(not s.flags & PG_private for s in shots)

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.per_aops["ext2_nobh_aops"].strategy == MIGRATE_FOLIO.name
    assert result.per_aops["ext2_nobh_aops"].rebound == 0
    assert built.machine.io.write_requests == 0
    for shot in shots:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and (page.flags & PG_dirty) == (shot.flags & PG_dirty)
    assert hotremove_verify(built).ok


def test_strategy_is_asked_once_per_address_space(
    hotremove_build, hotremove_plugins, hotremove_offline
):
    calls = []

    class Recorder:
        @hookimpl(tryfirst=True)
        def hotremove_migrate_strategy(self, mapping, policy):
            calls.append(mapping)

    hotremove_plugins.pm.register(Recorder(), name="recorder")
    built = hotremove_build(small_scenario({"type": "ext2"}))
    region_pages = cached_pages_before(built, [1])

    assert_clean_result(hotremove_offline(built))

    mappings = {id(s.mapping) for s in region_pages}
    assert len(calls) == len(mappings) < len(region_pages)


def test_buffers_stay_with_their_blocks_after_offline(hotremove_build, hotremove_offline):
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}))
    before = {
        (id(s.mapping), s.index): [b for _, b, _ in s.buffers]
        for s in cached_pages_before(built, [1])
    }
    assert_clean_result(hotremove_offline(built))
    for mapping in built.machine.mappings:
        for index, page in mapping.i_pages.items():
            if (id(mapping), index) in before:
                assert [bh.b_blocknr for bh in page_buffers(page)] == before[(id(mapping), index)]
                assert built.machine.memory.block_of(page.pfn) != 1


def test_rebinding_strategy_is_the_kernels():
    assert BUFFER_MIGRATE_FOLIO.rebinds and not MIGRATE_FOLIO.rebinds
