"""ext3 through its real entry point, in kernel "2004" (the only one whose ext3 driver mounts
ext3 images): ordered/writeback pages rebound by the seed's code with no I/O, ordered-mode
journal heads travelling with their buffers, data=journal pages written back by the
fallback after jbd2 (core ``hotremove.fs.jbd2``) committed them on its timer."""

from __future__ import annotations

import pytest

from hotremove.fs.jbd2 import Jbd2Journal, JournalHead
from hotremove.kernels import KERNELS
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO
from hotremove.mm.seed2004 import SEED2004
from hotremove.model.address_space import probe_mapping
from hotremove.model.buffer_head import BH_JBD, BH_JBDDirty, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import assert_clean_result, cached_pages_before, small_scenario
from hotremove_e2fs.aops import AOPS
from hotremove_ext3 import plugin

TABLES = ("ext3_ordered_aops", "ext3_writeback_aops", "ext3_journalled_aops")


def ext3_2004(data_mode: str, *, start: float | None = None, **workload):
    """A small ext3 scenario in kernel "2004"; ``start``: simulated seconds between the
    workload's writes and the offline (jbd2 commits 5 s after a transaction starts)."""
    scenario = small_scenario(
        {"type": "ext3", "block_size": 1024, "options": [f"data={data_mode}"]}, **workload
    )
    remove = {} if start is None else {"start": start}
    return scenario.with_overrides(kernel={"version": "2004"}, remove=remove)


def test_entry_point_claims_the_three_ext3_tables(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["ext3"]
    assert info.error is None and info.dist == "hotremove-ext3"
    assert sorted(info.aops) == sorted(TABLES)


@pytest.mark.parametrize(
    ("version", "rebinding"),
    [
        ("2004", "remap_move_buffer_ext2"),
        ("5.10", "buffer_migrate_page"),
        ("6.1", "buffer_migrate_folio"),
        ("7.2", "buffer_migrate_folio"),
    ],
)
def test_answers_per_kernel(version, rebinding):
    def ask(a_ops, policy="auto"):
        mapping = probe_mapping(AOPS[a_ops])
        return plugin.hotremove_migrate_strategy(mapping, policy, KERNELS[version])

    ordered, writeback = ask("ext3_ordered_aops"), ask("ext3_writeback_aops")
    assert ordered.name == writeback.name == rebinding
    expected = SEED2004 if version == "2004" else BUFFER_MIGRATE_FOLIO
    assert ordered.migrate_folio == writeback.migrate_folio == expected.migrate_folio
    assert ordered.source  # where the (historic) driver set it
    assert ask("ext3_journalled_aops") is None, "no migratepage: the fallback writes back"
    assert ask("ext3_ordered_aops", "writeback") is None
    assert ask("ext4_da_aops") is None


def test_only_the_ext3_driver_gets_a_jbd_from_this_plugin(hotremove_build):
    old = hotremove_build(ext3_2004("ordered"))
    new = hotremove_build(small_scenario({"type": "ext3", "options": ["data=ordered"]}))
    journal = old.machine.superblocks[0].s_journal
    assert isinstance(journal, Jbd2Journal) and journal.ordered_data_heads
    assert {m.a_ops.name for m in old.machine.mappings} == {"ext3_ordered_aops"}
    # Linux 6.12: the ext4 driver mounts the image (its plugin attaches jbd2, its tables)
    assert not new.machine.superblocks[0].s_journal.ordered_data_heads
    assert {m.a_ops.name for m in new.machine.mappings} == {"ext4_da_aops"}


@pytest.mark.parametrize("data_mode", ["ordered", "writeback"])
def test_2004_rebinds_dirty_pages_with_the_seeds_code_and_no_io(
    data_mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(ext3_2004(data_mode, start=0.0))
    dirty = [s for s in cached_pages_before(built, [1]) if s.flags & PG_dirty]
    assert dirty

    result = hotremove_offline(built)

    stats = result.per_aops[f"ext3_{data_mode}_aops"]
    assert result.offlined
    assert (stats.plugin, stats.strategy) == ("ext3", SEED2004.name)
    assert stats.rebound >= len(dirty) and stats.written_back == 0
    assert built.machine.io.write_requests == 0 and built.machine.io.journal_requests == 0
    for shot in dirty:  # moved, with its own buffer_heads, still dirty
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and page.flags & PG_dirty
        assert page_buffers(page) == [bh for bh, _, _ in shot.buffers]
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_2004_ordered_journal_heads_travel_with_rebound_buffers(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(ext3_2004("ordered", start=0.0))
    held = [
        (bh, bh.b_private)
        for s in cached_pages_before(built, [1])
        for bh, _, _ in s.buffers
        if bh.b_state & BH_JBD
    ]
    assert held, "ordered-mode dirty data buffers carry journal heads (t_sync_datalist)"
    assert all(isinstance(jh, JournalHead) and bh.b_count == 1 for bh, jh in held)

    assert hotremove_offline(built).offlined

    for bh, jh in held:
        assert bh.b_private is jh and jh.bh == bh and bh.b_state & BH_JBD
        assert built.machine.memory.block_of(bh.b_page.pfn) != 1
    # the journal's commit writes the data home from the buffers' new pages
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def test_2004_ordered_data_goes_home_at_the_commit_before_a_late_offline(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """kjournald's 5 s commit writes ordered data home and drops its heads: an offline 10 s
    after the writes (the default ``remove.start``) finds clean pages, whose buffers the seed
    releases instead of rebinding — and the migration itself writes nothing."""
    built = hotremove_build(ext3_2004("ordered"))
    journal = built.machine.superblocks[0].s_journal
    shots = cached_pages_before(built, [1])
    assert any(s.flags & PG_dirty for s in shots)

    result = hotremove_offline(built)

    stats = result.per_aops["ext3_ordered_aops"]
    assert_clean_result(result)
    assert journal.commits >= 1 and not journal.ordered
    assert built.machine.io.write_requests > 0, "the commit wrote the ordered data home"
    assert stats.written_back == 0 and stats.rebound == 0
    for shot in shots:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and not page.flags & (PG_dirty | PG_private)
    assert hotremove_verify(built).ok


def test_2004_data_journal_is_written_back_by_the_fallback(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(ext3_2004("journal"))
    journal = built.machine.superblocks[0].s_journal
    shots = cached_pages_before(built, [1])
    # ext3_journalled_commit_write journals the buffers and leaves the page clean: it gets
    # PG_dirty when kjournald's commit refiles the buffers (mark_buffer_dirty)
    dirty = [s for s in shots if any(state & BH_JBDDirty for _, _, state in s.buffers)]
    assert dirty, "journalled pages in the removed block"
    assert not any(s.flags & PG_dirty for s in dirty), "clean until the commit"

    result = hotremove_offline(built)

    stats = result.per_aops["ext3_journalled_aops"]
    assert result.offlined
    assert (stats.plugin, stats.strategy) == ("generic_writeback", "fallback_migrate_folio")
    assert stats.written_back == len(dirty) and stats.rebound == 0
    assert built.machine.io.write_requests >= 1
    assert journal.commits >= 1, "kjournald committed the transaction on its timer"
    for shot in shots:  # written home, journal heads and buffers released, moved clean
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn
        assert not page.flags & (PG_dirty | PG_private)
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()
