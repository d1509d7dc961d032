"""Injected faults never lose data: every run either offlines or rolls back, every lock and
reference balances, and verification after a clean sync is byte-exact (issue: reliability).

The kernel is 6.12, named in every scenario here: the newest that still writes a dirty page
out in its fallback (7.2's refuses it, so a forced-writeback run there never writes). Its
``offline_pages`` does not stop on -ENOMEM or -EIO — ``do_migrate_range`` ignores them and the
range is rescanned until the user's signal (``remove.timeout``) — while a plugin's exception
(a bug, not a kernel state) ends the run.
ext3 images are mounted by the ext4 driver, so the ext4 plugin migrates them."""

from __future__ import annotations

import pytest

from hotremove.mm.memory_block import offline
from hotremove.model.memory import ONLINE
from hotremove.model.migrate_mode import MigrateMode
from hotremove.sim.faults import FaultSettings
from hotremove.testing import small_scenario

FILESYSTEMS = {
    "ext2": ({"type": "ext2"}, "auto"),
    "ext3-ordered": ({"type": "ext3", "options": ["data=ordered"]}, "auto"),
    "ext3-writeback": ({"type": "ext3", "options": ["data=writeback"]}, "auto"),
    "ext3-journal": ({"type": "ext3", "options": ["data=journal"]}, "auto"),
    "ext4": ({"type": "ext4", "block_size": 1024}, "auto"),
    "forced-writeback-ext2": ({"type": "ext2"}, "writeback"),
}
OWNER = {
    "ext2": "ext2",
    "ext3-ordered": "ext4",
    "ext3-writeback": "ext4",
    "ext3-journal": "ext4",
    "ext4": "ext4",
    "forced-writeback-ext2": "generic_writeback",
}


def run(built, plugins, faults, **kw):
    rm = built.scenario.remove
    return offline(
        built.machine,
        plugins.hooks,
        list(rm.blocks),
        mode=MigrateMode.SYNC,
        policy=rm.strategy,
        checks=True,
        faults=FaultSettings(**faults),
        fault_seed=built.scenario.workload.seed,
        **kw,
    )


def assert_safe(built, result, verify):
    """Completed or rolled back, nothing left locked or unbalanced, every byte on disk."""
    assert not result.check_failures, result.check_failures[:3]
    if not result.offlined:
        assert built.machine.memory.block_state[1] == ONLINE, "rolled back"
        assert result.reason
    verdict = verify(built)
    assert verdict.ok, verdict.as_dict()


def region_pages(built):
    memory = built.machine.memory
    return [
        (m, i, p)
        for m in built.machine.mappings
        for i, p in m.i_pages.items()
        if memory.block_of(p.pfn) == 1
    ]


@pytest.mark.parametrize("case", FILESYSTEMS)
def test_writeback_eio(case, hotremove_build, hotremove_plugins, hotremove_verify):
    fs, strategy = FILESYSTEMS[case]
    built = hotremove_build(small_scenario(fs, strategy=strategy, dirty=0.6, kernel="6.12"))

    result = run(built, hotremove_plugins, {"writeback_eio": 0.5})

    if OWNER[case] == "generic_writeback":
        # 6.x writeout(): an asynchronous write error is recorded on the mapping (AS_EIO,
        # BH_Write_EIO), the page goes clean and moves: the offline completes, and exactly
        # the failed blocks never reach the disk
        assert result.offlined, result.reason
        lost = {(m.host.path, b) for m in built.machine.mappings for b in m.wb_err_blocks}
        assert lost and all(m.wb_err == -5 for m in built.machine.mappings if m.wb_err_blocks)
        assert not result.check_failures
        verdict = hotremove_verify(built)
        assert not verdict.ok and not verdict.mismatches, verdict.as_dict()
        named = {(x["file"], b) for x in verdict.lost_to_eio for b in x["blocks"]}
        assert named == lost, "verification names exactly the blocks that were lost"
        return
    if case == "ext3-journal":  # 6.12: jbd2 holds the buffers: -EINTR, whatever the I/O
        assert not result.offlined and result.reason.startswith("signal backoff (-EINTR)")
    else:
        assert result.offlined, "rebinding issues no write, so no write can fail"
    assert_safe(built, result, hotremove_verify)


def test_writeback_eio_in_the_seed_fails_the_page_and_loses_nothing(
    hotremove_build, hotremove_plugins, hotremove_verify
):
    """The 2004 seed writes and waits: a failed write fails the attempt with -EIO, the page
    stays dirty with its buffers, and -EIO ends the seed's bounded retries: rolled back."""
    built = hotremove_build(
        small_scenario({"type": "ext2"}, strategy="writeback", dirty=0.6, kernel="2004")
    )
    dirty = {p.pfn for m in built.machine.mappings for p in m.i_pages.values() if p.flags & 0x10}
    result = run(built, hotremove_plugins, {"writeback_eio": 0.5})
    assert not result.offlined and "-EIO" in result.reason
    eio = {f["pfn"] for f in result.failed if f["reason"] == "-EIO"}
    assert eio and eio <= dirty
    memory = built.machine.memory
    assert all(memory.pages[pfn].flags & 0x10 for pfn in eio), "still dirty where they were"
    assert_safe(built, result, hotremove_verify)


@pytest.mark.parametrize("case", FILESYSTEMS)
def test_enomem_after_five_pages(case, hotremove_build, hotremove_plugins, hotremove_verify):
    fs, strategy = FILESYSTEMS[case]
    built = hotremove_build(small_scenario(fs, strategy=strategy, kernel="6.12"))
    result = run(built, hotremove_plugins, {"enomem_after": 5})
    # five target frames, then -ENOMEM on every rescan until the signal
    assert not result.offlined and result.reason.startswith("signal backoff (-EINTR)")
    assert "-ENOMEM" in result.reason
    if case == "ext3-journal" or OWNER[case] == "generic_writeback":
        # refused attempts (journal-held pages; 6.12's writeout() returns -EAGAIN after
        # queueing the write) take a target frame each, too
        assert result.migrated <= 5
    else:
        assert result.migrated == 5
        assert all(f["reason"] == "-ENOMEM" for f in result.failed)
    assert {f["errno"] for f in result.failed} == {"-EINTR"}
    assert_safe(built, result, hotremove_verify)


@pytest.mark.parametrize("case", FILESYSTEMS)
def test_plugin_raises(case, hotremove_build, hotremove_plugins, hotremove_verify):
    fs, strategy = FILESYSTEMS[case]
    built = hotremove_build(small_scenario(fs, strategy=strategy, kernel="6.12"))
    plugin = OWNER[case]
    result = run(built, hotremove_plugins, {"plugin_raises": plugin})
    assert not result.offlined
    raised = [f for f in result.failed if f"plugin {plugin!r} raised InjectedFault" in f["reason"]]
    assert raised, result.failed
    if case != "ext3-journal":  # there, pages jbd2 holds fail busy before the plugin is asked
        assert len(raised) == len(result.failed)
    assert result.reason.startswith("a migration strategy raised")
    assert_safe(built, result, hotremove_verify)


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "per-page"])
@pytest.mark.parametrize("case", ["ext2", "ext3-journal", "forced-writeback-ext2"])
def test_interrupt_backs_off_at_a_batch_boundary(
    case, batching, hotremove_build, hotremove_plugins, hotremove_verify
):
    """A signal is honoured at the next poll: before every page on the per-page path,
    before every run of the batched path (the small scenario's pages are one run, so there
    the signal is pending from the first poll)."""
    fs, strategy = FILESYSTEMS[case]
    built = hotremove_build(small_scenario(fs, strategy=strategy, kernel="6.12"))
    polls = []
    deliver_at = 2 if not batching else 1

    def signal_pending():
        polls.append(1)
        return len(polls) >= deliver_at

    result = run(built, hotremove_plugins, {}, should_stop=signal_pending, batching=batching)
    assert not result.offlined and result.reason.startswith("signal backoff (-EINTR)")
    assert {f["errno"] for f in result.failed} == {"-EINTR"}
    assert_safe(built, result, hotremove_verify)
