"""ext4 through its real entry point, per kernel, against the outcomes measured on Debian's
Linux 6.1 and 6.12 (kernel-reference "Observed on real kernels"): ordered/delalloc pages move
by rebinding with nothing written; data=journal pages are written out by the fallback in 6.1
and refused by buffer_migrate_folio_norefs in 6.12 until the offline's signal."""

from __future__ import annotations

import pytest

from hotremove.fs.jbd2 import Jbd2Journal
from hotremove.kernels import KERNELS
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, BUFFER_MIGRATE_FOLIO_NOREFS
from hotremove.model.address_space import probe_mapping
from hotremove.model.buffer_head import BH_JBD, BH_JBDDirty, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import (
    assert_clean_result,
    cached_pages_before,
    rebinding_problems,
    small_scenario,
)
from hotremove_e2fs.aops import AOPS
from hotremove_ext4 import plugin

TABLES = ("ext4_aops", "ext4_da_aops", "ext4_journalled_aops")


def ask(a_ops: str, version: str, policy: str = "auto"):
    mapping = probe_mapping(AOPS[a_ops])
    return plugin.hotremove_migrate_strategy(mapping, policy, KERNELS[version])


def in_kernel(version: str, *filesystems, **kw):
    return small_scenario(*filesystems, **kw).with_overrides(kernel={"version": version})


def test_entry_point_claims_the_three_ext4_tables(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["ext4"]
    assert info.error is None and info.dist == "hotremove-ext4"
    assert sorted(info.aops) == sorted(TABLES)
    assert all(hotremove_plugins.aops_owner[a] == "ext4" for a in TABLES)


def same(strategy, expected, name=None) -> bool:
    """Both None, or ``strategy`` runs ``expected``'s function under the kernel's name for it
    (``name``: a ``*_page`` name before v6.0) and cites its source."""
    if strategy is None or expected is None:
        return strategy is expected
    return (
        strategy.migrate_folio is expected.migrate_folio
        and strategy.name == (name or expected.name)
        and strategy.source.startswith("fs/ext4/inode.c")
    )


@pytest.mark.parametrize(
    ("version", "buffered", "journalled", "name"),
    [
        ("2004", None, None, None),
        ("5.10", BUFFER_MIGRATE_FOLIO, None, "buffer_migrate_page"),
        ("6.1", BUFFER_MIGRATE_FOLIO, None, None),
        ("6.12", BUFFER_MIGRATE_FOLIO, BUFFER_MIGRATE_FOLIO_NOREFS, None),
        ("7.2", BUFFER_MIGRATE_FOLIO, BUFFER_MIGRATE_FOLIO_NOREFS, None),
    ],
)
def test_each_kernel_gets_its_migrate_folio(version, buffered, journalled, name):
    assert same(ask("ext4_aops", version), buffered, name)
    assert same(ask("ext4_da_aops", version), buffered, name)
    assert same(ask("ext4_journalled_aops", version), journalled)
    assert ask("ext4_da_aops", version, "writeback") is None
    assert ask("ext3_ordered_aops", version) is None and ask("ext2_aops", version) is None


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_mounts_ext3_and_ext4_images_with_jbd2_in_6x(version, hotremove_build):
    built = hotremove_build(
        in_kernel(version, *({"type": t, "files": 4} for t in ("ext3", "ext4", "ext2")))
    )
    ext3, ext4, ext2 = built.machine.superblocks
    for sb in (ext3, ext4):
        assert isinstance(sb.s_journal, Jbd2Journal) and not sb.s_journal.ordered_data_heads
    assert ext2.s_journal is None
    tables = {m.host.i_sb.s_type: m.a_ops.name for m in built.machine.mappings}
    assert tables == {"ext3": "ext4_da_aops", "ext4": "ext4_da_aops", "ext2": "ext2_aops"}


@pytest.mark.parametrize("version", ["6.1", "6.12"])
@pytest.mark.parametrize("fs_type", ["ext4", "ext3"])
def test_delalloc_pages_rebind_with_nothing_written(
    version, fs_type, hotremove_build, hotremove_offline, hotremove_verify
):
    """ "ext4 data=ordered, delalloc: buffer_migrate_folio — 0 written, dirty unchanged"
    (6.1 and 6.12); an ext3 image is the same, mounted by ext4."""
    built = hotremove_build(in_kernel(version, {"type": fs_type, "block_size": 1024}, dirty=0.6))
    shots = cached_pages_before(built, [1])
    dirty = [s for s in shots if s.flags & PG_dirty]
    assert dirty

    result = hotremove_offline(built)

    assert_clean_result(result)
    stats = result.per_aops["ext4_da_aops"]
    assert (stats.plugin, stats.strategy) == ("ext4", "buffer_migrate_folio")
    assert stats.rebound == stats.migrated == len(shots)
    assert built.machine.io.write_requests == 0 and built.machine.io.journal_requests == 0
    assert rebinding_problems(built, shots) == []
    for shot in dirty:
        assert shot.mapping.i_pages[shot.index].flags & PG_dirty
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()


def journalled(version: str, **remove):
    scenario = in_kernel(version, {"type": "ext4", "block_size": 1024, "options": ["data=journal"]})
    return scenario.with_overrides(remove=remove) if remove else scenario


def test_612_data_journal_is_refused_until_the_signal(hotremove_build, hotremove_offline):
    """ "ext4 data=journal (6.12: buffer_migrate_folio_norefs): not offlined, stopped by the
    signal (-EINTR); 0 written; the journal-held pages still in the block"."""
    built = hotremove_build(journalled("6.12", timeout=30.0))
    shots = cached_pages_before(built, [1])
    held = [s for s in shots if any(state & BH_JBD for _, _, state in s.buffers)]
    assert held, "journalled buffers carry journal heads"

    result = hotremove_offline(built)

    assert not result.offlined
    assert result.per_aops["ext4_journalled_aops"].strategy == "buffer_migrate_folio_norefs"
    assert result.retries["-EAGAIN"] >= len(held)
    for shot in held:  # still in the removed block, still held by the journal
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn == shot.pfn and page.flags & PG_private
        assert any(bh.b_state & BH_JBD for bh in page_buffers(page))


def test_61_data_journal_has_no_migrate_folio_the_fallback_writes_it_out(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """ "ext4 data=journal (6.1: no migrate_folio → fallback writeout): offlined; the dirty
    pages written during the offline; clean, buffers dropped". 6.1 journals the buffers and
    leaves the page clean; the commit (5 s later, before the offline) dirties it."""
    built = hotremove_build(journalled("6.1"))
    shots = cached_pages_before(built, [1])
    dirty = [s for s in shots if any(state & BH_JBDDirty for _, _, state in s.buffers)]
    assert not any(s.flags & PG_dirty for s in dirty)

    result = hotremove_offline(built)

    assert_clean_result(result)
    stats = result.per_aops["ext4_journalled_aops"]
    assert (stats.plugin, stats.strategy) == ("generic_writeback", "fallback_migrate_folio")
    assert built.machine.vmstat.nr_written_back == len(dirty) > 0
    for shot in shots:
        page = shot.mapping.i_pages[shot.index]
        assert page.pfn != shot.pfn and not page.flags & (PG_dirty | PG_private)
    assert hotremove_verify(built).ok


def test_2004_ext4_pages_are_written_back(hotremove_build, hotremove_offline):
    built = hotremove_build(in_kernel("2004", {"type": "ext4"}, dirty=0.6))
    result = hotremove_offline(built)
    assert_clean_result(result)
    assert result.per_aops["ext4_da_aops"].plugin == "generic_writeback"
    assert built.machine.io.write_requests > 0
