"""The cells of kernel-reference.md's "Observed on real kernels" table that hotremove models,
reproduced by the simulator from the scenario files that mirror the measured workload
(examples/realkernel/*-small.toml: 1 KiB-block images, files read into one 128 MiB movable
block, part of them dirtied, periodic writeback off, the block offlined).

* ext2 and ext4 data=ordered, 5.10, 6.1, 6.12 and 7.2: offlined, 0 written, the pages stay
  dirty (5.10 through ``buffer_migrate_page``, on the batched path like the others);
* ext4 data=journal, 5.10 and 6.1: offlined, the dirty pages written back by the fallback;
* ext4 data=journal, 6.12 and 7.2: not offlined (-EINTR), 0 written, the data intact;
* ext4 data=journal, 6.12 with periodic writeback on: not offlined; the flusher wrote the
  pages, and clean ones stay journal-held until the signal; after ``sync`` it offlines.

Every run ends verified: e2fsck clean and every file byte-equal to the golden model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hotremove import scenario as scenario_mod
from hotremove.model.buffer_head import BH_JBD, page_buffers
from hotremove.model.page import PG_dirty, PG_private
from hotremove.sim.runner import run_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "realkernel"


def load(name: str, version: str, **kernel: object):
    scn = scenario_mod.load(EXAMPLES / f"{name}.toml")
    return scn.with_overrides(kernel={"version": version, **kernel})


def run(scn, plugins, tmp_path, inspect=None):
    report = run_scenario(scn, name="cell", plugins=plugins, workdir=tmp_path, inspect=inspect)
    assert report.verify is not None and report.verify.ok, report.verify
    assert report.offline.kernel == scn.kernel.version
    return report


def dirty_in_region(built):
    memory = built.machine.memory
    return sum(
        1
        for m in built.machine.mappings
        for p in m.i_pages.values()
        if p.flags & PG_dirty and memory.block_of(p.pfn) in built.scenario.remove.blocks
    )


@pytest.mark.parametrize("version", ["5.10", "6.1", "6.12", "7.2"])
@pytest.mark.parametrize("name", ["ext2-small", "ext4-ordered-small"])
def test_rebinding_offlines_without_writing(name, version, hotremove_plugins, tmp_path):
    seen = {}

    def inspect(built):  # after the offline: the pages stayed dirty, buffers and all
        seen["dirty"] = sum(
            1 for m in built.machine.mappings for p in m.i_pages.values() if p.flags & PG_dirty
        )

    report = run(load(name, version), hotremove_plugins, tmp_path, inspect)
    off = report.offline
    assert off.offlined and not off.failed
    assert off.written_back == 0 and report.writeback_ios == 0
    assert off.rebound > 0 and seen["dirty"] > 0
    # the cited strategy (5.10: buffer_migrate_page) runs on the batched path all the same
    assert off.batched > 0
    buffered = off.per_aops["ext2_aops" if name == "ext2-small" else "ext4_da_aops"]
    page_era = version == "5.10"
    assert buffered.strategy == ("buffer_migrate_page" if page_era else "buffer_migrate_folio")


@pytest.mark.parametrize(
    ("version", "fallback"), [("5.10", "fallback_migrate_page"), ("6.1", "fallback_migrate_folio")]
)
def test_data_journal_before_6_3_is_written_back_by_the_fallback(
    version, fallback, hotremove_plugins, tmp_path
):
    report = run(load("ext4-journal-small", version), hotremove_plugins, tmp_path)
    off = report.offline
    assert off.offlined and not off.failed
    stats = off.per_aops["ext4_journalled_aops"]
    assert (stats.strategy, stats.plugin) == (fallback, "generic_writeback")
    assert stats.written_back > 0 and stats.written_back == off.written_back
    assert report.writeback_ios > 0


@pytest.mark.parametrize("version", ["6.12", "7.2"])
def test_data_journal_from_6_3_spins_until_the_signal_and_writes_nothing(
    version, hotremove_plugins, tmp_path
):
    seen = {}

    def inspect(built):
        seen["dirty"] = dirty_in_region(built)

    report = run(load("ext4-journal-small", version), hotremove_plugins, tmp_path, inspect)
    off = report.offline
    assert not off.offlined
    assert off.reason.startswith("signal backoff (-EINTR): stopped after 60 s")
    assert {f["errno"] for f in off.failed} == {"-EINTR"}
    assert {f["reason"] for f in off.failed} == {"busy: buffer held by jbd2 (journal_head)"}
    assert off.written_back == 0 and report.writeback_ios == 0 and report.flushed == 0
    assert off.failed_attempts > 100 * len(off.failed), "every rescan failed them again"
    assert seen["dirty"] == len(off.failed), "the journal-held pages stay dirty where they were"
    assert off.migrated > 0, "the clean pages moved first"


def test_data_journal_on_6_12_with_writeback_on_leaves_clean_journal_held_pages(
    hotremove_plugins, tmp_path
):
    """The flusher writes every dirty page during the attempt, but the buffers keep their
    journal_head until jbd2 cleans its checkpoint list — which an idle filesystem never does —
    so clean pages stay pinned until the signal (the measured 1,785 of 3,320)."""
    scn = load(
        "ext4-journal-small", "6.12", dirty_writeback_centisecs=500, dirty_expire_centisecs=3000
    ).with_overrides(remove={"timeout": 200.0})
    seen = {}

    def inspect(built):
        memory = built.machine.memory
        stuck = [
            p
            for m in built.machine.mappings
            for p in m.i_pages.values()
            if memory.block_of(p.pfn) in built.scenario.remove.blocks and p.flags & PG_private
        ]
        seen["clean_held"] = sum(
            1
            for p in stuck
            if not p.flags & PG_dirty and any(bh.b_state & BH_JBD for bh in page_buffers(p))
        )
        seen["dirty"] = dirty_in_region(built)

    report = run(scn, hotremove_plugins, tmp_path, inspect)
    off = report.offline
    assert not off.offlined and off.reason.startswith("signal backoff (-EINTR)")
    assert report.flushed > 0 and off.written_back == 0, "the flusher wrote, not migration"
    assert seen["dirty"] == 0, "nothing is left dirty"
    assert seen["clean_held"] > 0 and seen["clean_held"] == len(off.failed)
    assert {f["reason"] for f in off.failed} == {"busy: buffer held by jbd2 (journal_head)"}


def test_after_sync_the_same_block_offlines_on_6_12(hotremove_plugins, tmp_path):
    """``sync`` commits and checkpoints the journal: the heads go and the block offlines."""
    from hotremove.mm.memory_block import offline
    from hotremove.sim.verify import sync
    from hotremove.workload import build

    scn = load("ext4-journal-small", "6.12")
    built = build(scn, hotremove_plugins.hooks, tmp_path)
    sync(built.machine, hotremove_plugins.hooks)
    result = offline(
        built.machine, hotremove_plugins.hooks, list(scn.remove.blocks), **scn.offline_kwargs()
    )
    assert result.offlined and result.written_back == 0


def test_queued_writeouts_overlap_on_a_queueing_device(hotremove_plugins, tmp_path):
    """6.x ``writeout()`` queues the page (WB_SYNC_NONE): on an SSD with NCQ the writes of a
    pass overlap their latency; the seed wrote and waited, paying each request in full. Same
    pages, same requests, less device time."""
    io = {}
    for version in ("2004", "6.1"):
        scn = load("ext2-small", version).with_overrides(
            remove={"strategy": "writeback"}, device={"preset": "sata-ssd"}
        )
        report = run(scn, hotremove_plugins, tmp_path / version)
        assert report.offline.offlined
        io[version] = (report.writeback_ios, report.io_seconds)
    assert io["2004"][0] == io["6.1"][0] > 0
    assert io["6.1"][1] < io["2004"][1] / 4
