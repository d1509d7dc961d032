"""ext2 per kernel: the 2004 seed rebinds with its own (buggy) code, Linux 6.x with
buffer_migrate_folio — either way without writing a dirty page."""

from __future__ import annotations

import pytest

from hotremove.kernels import KERNELS
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO
from hotremove.mm.seed2004 import SEED2004
from hotremove.model.address_space import probe_mapping
from hotremove.model.page import PG_dirty
from hotremove.testing import assert_clean_result, cached_pages_before, small_scenario
from hotremove_e2fs.aops import AOPS
from hotremove_ext2 import plugin
from hotremove_ext2.plugin import SEED2004_POLICY


def answer(a_ops: str, version: str, policy: str = "auto"):
    mapping = probe_mapping(AOPS[a_ops])
    return plugin.hotremove_migrate_strategy(mapping, policy, KERNELS[version])


def runs(strategy, expected, name=None) -> bool:
    """``strategy`` runs ``expected``'s function under the kernel's name for it, and says
    where it comes from."""
    return (
        strategy.migrate_folio is expected.migrate_folio
        and strategy.name == (name or expected.name)
        and bool(strategy.source)
    )


@pytest.mark.parametrize(
    ("version", "ext2_aops", "nobh", "names"),
    [
        ("5.10", BUFFER_MIGRATE_FOLIO, BUFFER_MIGRATE_FOLIO, ("buffer_migrate_page",) * 2),
        ("6.1", BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, (None, None)),
        ("6.12", BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, (None, None)),
        ("7.2", BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, (None, None)),
    ],
)
def test_each_kernel_gets_its_migrate_folio(version, ext2_aops, nobh, names):
    assert runs(answer("ext2_aops", version), ext2_aops, names[0])
    assert runs(answer("ext2_nobh_aops", version), nobh, names[1])
    assert answer("ext2_aops", version, SEED2004_POLICY) is SEED2004  # the variant, anywhere
    assert answer("ext2_aops", version, "writeback") is None
    assert answer("ext4_da_aops", version) is None


def test_2004_gets_the_seeds_rebinding():
    version = "2004"
    assert answer("ext2_aops", version) is SEED2004
    assert runs(answer("ext2_nobh_aops", version), MIGRATE_FOLIO)
    assert answer("ext2_aops", version, SEED2004_POLICY) is SEED2004  # the variant, anywhere
    assert answer("ext2_aops", version, "writeback") is None
    assert answer("ext4_da_aops", version) is None


def ext2_machine(hotremove_build, version: str):
    scenario = small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.6)
    return hotremove_build(scenario.with_overrides(kernel={"version": version}))


def test_2004_rebinds_with_the_seeds_code_and_its_bugs(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = ext2_machine(hotremove_build, "2004")
    dirty = [s for s in cached_pages_before(built, [1]) if s.flags & PG_dirty]
    assert dirty

    result = hotremove_offline(built)

    stats = result.per_aops["ext2_aops"]
    assert result.offlined and (stats.plugin, stats.strategy) == ("ext2", SEED2004.name)
    assert built.machine.io.write_requests == 0 and stats.written_back == 0
    assert stats.rebound >= len(dirty)
    kinds = {v.kind for v in built.machine.task.violations}
    assert "sleep_in_atomic" in kinds, "lock_buffer() under private_lock"
    assert any(c.check == "bh_state" for c in result.check_failures), "whole pages dirtied"
    assert hotremove_verify(built).ok


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_6x_rebinds_with_buffer_migrate_folio(
    version, hotremove_build, hotremove_offline, hotremove_verify
):
    """kernel-reference "Observed on real kernels": ext2, 6.1 and 6.12 — 0 pages written,
    the dirty pages still dirty after the offline."""
    built = ext2_machine(hotremove_build, version)
    dirty = [s for s in cached_pages_before(built, [1]) if s.flags & PG_dirty]

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.per_aops["ext2_aops"].strategy == "buffer_migrate_folio"
    assert built.machine.io.write_requests == 0
    assert built.machine.task.violations == []
    for shot in dirty:
        assert shot.mapping.i_pages[shot.index].flags & PG_dirty
    assert hotremove_verify(built).ok
