"""What the plugin is for: dirty ext4 pages move by rebinding, with zero writeback I/O, where
hotremove's writeback fallback would write each of them out first."""

from __future__ import annotations

import pytest

from hotremove.model.page import PG_dirty


def test_dirty_ext4_pages_are_rebound_without_io(
    hotremove_machine, hotremove_run, hotremove_verify
):
    built = hotremove_machine({"type": "ext4", "block_size": 1024}, dirty=0.6)

    run = hotremove_run(built)

    stats = run.result.per_aops["ext4_da_aops"]
    dirty = [s for s in run.shots if s.flags & PG_dirty]
    assert dirty, "the removed block must hold dirty ext4 pages"
    assert run.result.offlined and not run.check_failures
    assert (stats.plugin, stats.strategy) == ("ext4", "buffer_migrate_folio")
    assert stats.rebound == stats.migrated == len(run.shots)
    assert stats.written_back == 0 and run.io.write_requests == 0
    assert not run.contract_problems
    for shot in dirty:  # still dirty on the new page: written later, by the flusher
        assert shot.mapping.i_pages[shot.index].flags & PG_dirty
    assert hotremove_verify(built).ok


def test_forced_writeback_still_goes_to_the_fallback(hotremove_machine, hotremove_run):
    pytest.importorskip("hotremove_generic_writeback", reason="needs hotremove-generic-writeback")
    built = hotremove_machine({"type": "ext4", "block_size": 1024}, strategy="writeback")

    run = hotremove_run(built)

    assert run.result.per_aops["ext4_da_aops"].plugin == "generic_writeback"
    assert run.io.write_requests > 0
