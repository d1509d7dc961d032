"""The seed's rebinding "with trivial changes" on ext3 (kernel "2004"): the data survives, and
the lock checker and the conformance kit flag the same bugs as on ext2."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hotremove.locking.lockdep import checking
from hotremove.testing import ConformanceError, small_scenario
from hotremove.testing.conformance import Case, ConformanceSuite


def test_lock_checker_flags_the_seed_on_ext3(hotremove_build, hotremove_offline, hotremove_verify):
    scenario = small_scenario(
        {"type": "ext3", "block_size": 1024, "options": ["data=writeback"]}, dirty=0.6
    ).with_overrides(kernel={"version": "2004"})
    built = hotremove_build(scenario)

    with checking():
        result = hotremove_offline(built)

    assert result.offlined
    violations = built.machine.task.violations
    sleeps = [v for v in violations if v.kind == "sleep_in_atomic"]
    assert sleeps and sleeps[0].call_path[:2] == ("lock_buffer", "remap_move_buffer_ext2")
    assert ":private_lock held" in sleeps[0].message
    assert any(v.kind == "lock_order" for v in violations), "private_lock ↔ buffer_lock"
    assert hotremove_verify(built).ok, "but no byte is lost"


class SeedSuite(ConformanceSuite):
    """Not collected (no Test prefix): the kit run by hand on the declared-out cases."""

    plugin = "ext3"
    kernel = "2004"
    filesystems: ClassVar = {"ext3": {"ext3_writeback_aops": ("data=writeback",)}}


def test_the_kit_names_the_seeds_bugs_on_ext3(tmp_path):
    """data=writeback: the pages are still dirty when the offline starts (data=ordered pages
    were written home by the 5 s commit, and the seed frees clean pages' buffers)."""
    suite = SeedSuite()
    run = suite.run_case(Case("ext3", "ext3_writeback_aops", ("data=writeback",)), "sync", tmp_path)

    with pytest.raises(ConformanceError) as locks:
        suite.check_locks(run)
    assert "BUG: sleeping function called from invalid context: lock_buffer(" in str(locks.value)
    suite.check_data(run)  # the bytes survive
    suite.check_rebinding_issues_no_writeback(run)
