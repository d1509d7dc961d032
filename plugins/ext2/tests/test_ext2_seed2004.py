"""The 2004 seed's strategy (policy "ext2-seed2004", kernel "2004") on real ext2 images: it
moves the data correctly, and the lock checker flags exactly its known bugs; the merged
strategy (buffer_migrate_folio: "auto" in Linux 6.1) reports nothing under the same checks."""

from __future__ import annotations

import pytest

from hotremove.locking.lockdep import LockdepStop, checking
from hotremove.testing import small_scenario
from hotremove_ext2.plugin import SEED2004_POLICY as POLICY


@pytest.fixture
def offline_ext2(hotremove_build, hotremove_offline, hotremove_verify):
    """Build a small ext2 machine, offline block 1 under ``strategy`` in ``kernel``; return
    (result, violations, verdict)."""

    def run(strategy: str, verify: bool = True, kernel: str = "2004"):
        scenario = small_scenario(
            {"type": "ext2", "block_size": 1024}, strategy=strategy, dirty=0.6
        ).with_overrides(kernel={"version": kernel})
        built = hotremove_build(scenario)
        result = hotremove_offline(built)
        verdict = hotremove_verify(built) if verify else None
        return result, built.machine.task.violations, verdict

    return run


def test_seed_sleeps_in_atomic_context_under_private_lock(offline_ext2):
    result, violations, verdict = offline_ext2(POLICY)
    assert result.offlined and verdict.ok, "the seed moves the data correctly"
    assert [v.kind for v in violations] == ["sleep_in_atomic"], "reported once per call path"
    bug = violations[0]
    assert bug.message.startswith("BUG: sleeping function called from invalid context: ")
    assert bug.operation == "lock_buffer" and "lock_buffer(blk " in bug.message
    assert ":private_lock held" in bug.message
    assert bug.message.endswith("at remap_move_buffer_ext2")
    assert bug.call_path[:3] == ("lock_buffer", "remap_move_buffer_ext2", "remap_preparepage")
    assert "migrate_pages" in bug.call_path  # reached through the offline's migrate_pages()
    # the seed's "XXX this will make a whole page dirty": clean buffers became dirty
    assert any(c.check == "bh_state" for c in result.check_failures)


def test_lockdep_also_finds_the_seeds_private_lock_buffer_lock_inversion(offline_ext2):
    with checking():
        _, violations, _ = offline_ext2(POLICY, verify=False)
    order = [v for v in violations if v.kind == "lock_order"]
    assert len(order) == 1
    message = order[0].message
    assert "takes private_lock at set_page_dirty_buffers ← remap_exchange_pages" in message
    assert "while holding private_lock at lock_buffer ← remap_move_buffer_ext2" in message


def test_strict_checks_stop_the_seed_at_its_first_bug(offline_ext2):
    with checking(strict=True), pytest.raises(LockdepStop) as stop:
        offline_ext2(POLICY, verify=False)
    assert stop.value.violation.kind == "sleep_in_atomic"
    assert stop.value.violation.call_path[1] == "remap_move_buffer_ext2"


def test_the_merged_strategy_reports_nothing_under_the_same_checks(offline_ext2):
    with checking(strict=True) as graph:
        result, violations, verdict = offline_ext2("auto", kernel="6.1")
    assert result.offlined and verdict.ok and not result.check_failures
    assert violations == []
    assert ("private_lock", "buffer_lock") not in graph.edges
