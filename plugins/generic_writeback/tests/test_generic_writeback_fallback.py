"""generic_writeback through its real entry point, per kernel: the seed writes a dirty page
and moves it in one attempt (2004); Linux 6.x's ``writeout()`` writes it, returns -EAGAIN and
moves it clean in a later attempt, releasing its buffers through the journal; ≥ 6.16 refuses
it (-EBUSY) without writing. Writes are one request per run of adjacent dirty blocks."""

from __future__ import annotations

import pytest

from hotremove.kernels import KERNELS
from hotremove.model.address_space import probe_mapping
from hotremove.model.buffer_head import BH_JBD, BH_Dirty, BH_JBDDirty, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import (
    CachedPage,
    assert_clean_result,
    cached_pages_before,
    small_scenario,
)
from hotremove_e2fs.aops import AOPS
from hotremove_generic_writeback import plugin


def expected_requests(shots) -> int:
    """One request per run of adjacent dirty blocks of each dirty page."""
    total = 0
    for shot in shots:
        blocks = sorted(b for _, b, state in shot.buffers if state & BH_Dirty)
        total += sum(1 for i, b in enumerate(blocks) if i == 0 or b != blocks[i - 1] + 1)
    return total


def in_kernel(version: str, *filesystems, **kw):
    return small_scenario(*filesystems, **kw).with_overrides(kernel={"version": version})


def test_entry_point_answers_last_for_everything(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["generic_writeback"]
    assert info.error is None and info.dist == "hotremove-generic-writeback"
    assert info.policies == ["writeback"]
    impls = hotremove_plugins.pm.hook.hotremove_migrate_strategy.get_hookimpls()
    assert impls[0].plugin_name == "generic_writeback" and impls[0].trylast


@pytest.mark.parametrize("version", sorted(KERNELS))
def test_each_kernel_gets_its_fallback(version):
    kernel = KERNELS[version]
    for a_ops in ("ext2_aops", "ext4_journalled_aops"):
        for policy in ("auto", "writeback"):
            mapping = probe_mapping(AOPS[a_ops])
            got = plugin.hotremove_migrate_strategy(mapping, policy, kernel)
            name = "fallback_migrate_folio" if kernel.folios else "fallback_migrate_page"
            assert got.name == name and not got.rebinds and got.source
            assert got.dirty == kernel.fallback_dirty
    assert plugin.fallback_for(KERNELS["2004"]).dirty == "writeout_sync"
    assert plugin.fallback_for(KERNELS["6.1"]).dirty == "writeout"
    assert plugin.fallback_for(KERNELS["5.10"]).dirty == "writeout"
    assert plugin.fallback_for(KERNELS["7.2"]).dirty == "ebusy"  # 7ee3647243e5, v6.16


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_2004_writes_each_dirty_page_once_per_run_and_moves_it_at_once(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    """ext4 did not exist in 2004: its pages get the seed's writeback (remap_preparepage)."""
    built = hotremove_build(in_kernel("2004", {"type": "ext4"}, dirty=0.6, mode=mode))
    shots = cached_pages_before(built, [1])
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
    else:
        assert result.retries["-EAGAIN"] == 0, "the seed waits for its write: same attempt"
    for shot in shots:  # buffers were dropped, pages arrive clean
        page = shot.mapping.i_pages[shot.index]
        assert not page.flags & (PG_private | PG_dirty)
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_6x_writeout_returns_eagain_then_moves_the_page_clean(
    version, hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(in_kernel(version, {"type": "ext2"}, dirty=0.6, strategy="writeback"))
    shots = cached_pages_before(built, [1])
    dirty = [s for s in shots if s.flags & PG_dirty]
    assert dirty

    result = hotremove_offline(built)

    assert_clean_result(result)
    stats = result.per_aops["ext2_aops"]
    assert stats.plugin == "generic_writeback" and stats.rebound == 0
    # written in the failed attempt: counted in vmstat (the per-a_ops row counts writes made
    # by the attempt that moved the page)
    assert built.machine.vmstat.nr_written_back == len(dirty), "each dirty page written once"
    assert built.machine.io.write_requests == expected_requests(dirty)
    assert result.retries["-EAGAIN"] >= len(dirty), "writeout(): this attempt fails anyway"
    for shot in shots:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and not page.flags & (PG_private | PG_dirty)
    assert hotremove_verify(built).ok


def journalled(shots: list[CachedPage]) -> list[CachedPage]:
    """The pages a write handed to the journal (a buffer BH_JBDDirty)."""
    return [s for s in shots if any(state & BH_JBDDirty for _, _, state in s.buffers)]


def test_6x_release_goes_through_the_journal(hotremove_build, hotremove_offline, hotremove_verify):
    """Linux 6.1, ext4 data=journal (no migrate_folio there): the commit dirties the pages
    (``mark_buffer_dirty``), ``writeout()`` writes the committed buffers home, then
    ``filemap_release_folio`` asks jbd2, which drops their journal heads — so the pages move
    (kernel-reference "Observed on real kernels": 6.1 data=journal offlines, the dirty
    pages written during the offline)."""
    built = hotremove_build(
        in_kernel("6.1", {"type": "ext4", "block_size": 1024, "options": ["data=journal"]})
    )
    journal = built.machine.superblocks[0].s_journal
    shots = cached_pages_before(built, [1])
    dirty = journalled(shots)
    assert dirty and all(any(state & BH_JBD for _, _, state in s.buffers) for s in dirty), (
        "journalled pages carry journal heads"
    )
    assert not any(s.flags & PG_dirty for s in dirty), "6.1: clean until the commit"

    result = hotremove_offline(built)

    assert_clean_result(result)
    stats = result.per_aops["ext4_journalled_aops"]
    assert (stats.plugin, stats.strategy) == ("generic_writeback", "fallback_migrate_folio")
    assert built.machine.vmstat.nr_written_back == len(dirty)
    assert built.machine.io.write_requests > 0
    assert journal.commits >= 1, "committed on kjournald2's timer before the offline"
    for shot in shots:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and not page.flags & (PG_private | PG_dirty)
    assert hotremove_verify(built).ok


def test_72_refuses_dirty_pages_and_writes_nothing(hotremove_build, hotremove_offline):
    """Linux 7.2 (≥ v6.16, 7ee3647243e5): dirty pages are -EBUSY in every attempt, nothing is
    written, the offline ends at its signal."""
    scenario = in_kernel("7.2", {"type": "ext2"}, dirty=0.6, strategy="writeback")
    built = hotremove_build(scenario.with_overrides(remove={"timeout": 2.0}))
    dirty = [s for s in cached_pages_before(built, [1]) if s.flags & PG_dirty]

    result = hotremove_offline(built)

    assert not result.offlined
    assert result.retries["-EBUSY"] >= len(dirty) and result.retries["-EAGAIN"] == 0
    assert built.machine.io.write_requests == 0
    for shot in dirty:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn == shot.pfn and page.flags & PG_dirty
        assert [bh for bh, _, _ in shot.buffers] == page_buffers(page)


def test_forced_writeback_policy_overrides_ext2_rebinding(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """Linux 6.12: the fallback still writes (7.2's refuses dirty folios, tested below)."""
    scenario = small_scenario({"type": "ext2"}, strategy="writeback")
    built = hotremove_build(scenario.with_overrides(kernel={"version": "6.12"}))
    dirty = [s for s in cached_pages_before(built, [1]) if s.flags & PG_dirty]

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.per_aops["ext2_aops"].plugin == "generic_writeback"
    assert result.per_aops["ext2_aops"].rebound == 0
    assert built.machine.io.write_requests == expected_requests(dirty) > 0
    assert hotremove_verify(built).ok


def test_6x_uncommitted_journalled_pages_wait_for_the_commit(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """An offline right after the writes (Linux 6.1, ext4 data=journal): the buffers belong
    to the running transaction (BH_JBDDirty), which only the journal may write, and 6.1
    leaves their pages clean until the commit. The clean page's buffers cannot be released
    (jbd2 holds them: -EAGAIN, nothing written) until kjournald2 commits on its 5 s timer
    and dirties the page; then it is written once and moves."""
    scenario = in_kernel("6.1", {"type": "ext4", "block_size": 1024, "options": ["data=journal"]})
    built = hotremove_build(scenario.with_overrides(remove={"start": 0.0}))
    journal = built.machine.superblocks[0].s_journal
    dirty = journalled(cached_pages_before(built, [1]))
    assert dirty and journal.running and journal.commits == 0

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert journal.commits >= 1
    assert built.machine.vmstat.nr_written_back == len(dirty), "each page counted once"
    assert hotremove_verify(built).ok
