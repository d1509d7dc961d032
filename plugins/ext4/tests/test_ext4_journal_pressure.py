"""ext4 data=journal with a journal the dirty data does not fit in (core ``hotremove.fs.jbd2``):
transactions forced to commit by their size, checkpoints forced by log space, and what the
offline then sees — on real 1 KiB-block images whose 1 MiB journal (1,024 blocks) mke2fs
chose, with thousands of journalled buffers."""

from __future__ import annotations

import pytest

from hotremove.fs.jbd2 import Jbd2Journal
from hotremove.model.buffer_head import BH_JBD, BH_Dirty, BH_JBDDirty, page_buffers
from hotremove.model.page import PAGE_SIZE, PG_dirty, PG_private
from hotremove.testing import small_scenario


def pressure(version: str, *, blocks=(1,), remove=None, **workload):
    """64 files of 96 KiB on a 16 MiB image (1,024-block journal), half the pages dirtied
    with whole buffers: ≈ 3,000 buffers through the journal, ≈ 3 logs' worth; no flusher."""
    fs = {
        "type": "ext4",
        "block_size": 1024,
        "size": "16MiB",
        "files": 64,
        "file_size": "96KiB",
        "options": ["data=journal"],
    }
    scenario = small_scenario(fs, kernel=version, blocks=blocks, dirty_buffers="whole", **workload)
    # periodic writeback off, as in the real-kernel runs: only jbd2 writes the buffers home
    return scenario.with_overrides(remove=remove or {}, kernel={"dirty_writeback_centisecs": 0})


def journal_of(built) -> Jbd2Journal:
    journal = built.machine.superblocks[0].s_journal
    assert isinstance(journal, Jbd2Journal)
    return journal


def journalled_pages(built) -> list:
    """Every page a write handed to the journal (a buffer with a journal head or one that a
    checkpoint wrote home: its page is still PG_dirty)."""
    pages = []
    for mapping in built.machine.mappings:
        for page in mapping.i_pages.values():
            if page.flags & PG_dirty or (
                page.flags & PG_private
                and any(bh.b_state & (BH_JBD | BH_JBDDirty) for bh in page_buffers(page))
            ):
                pages.append(page)
    return pages


@pytest.mark.parametrize(("version", "limit"), [("6.1", 1024 // 4), ("6.12", 1024 // 3)])
def test_a_transaction_is_forced_to_commit_by_its_size(hotremove_build, version, limit):
    """All writes at one instant (no timer runs): jbd2 commits only because a handle's
    credits would take the transaction past ``j_max_transaction_buffers`` — a quarter of
    the log in 6.1, a third in 6.12 — so 6.12 commits fewer, larger transactions. Every
    commit is one sequential write to the log."""
    built = hotremove_build(pressure(version))
    journal = journal_of(built)

    assert journal.max_transaction == limit
    assert journal.forced_commits >= 5 and journal.commits == journal.forced_commits
    assert built.machine.io.journal_requests == journal.commits
    for t in journal.log:
        assert t.credits <= limit, "no transaction outgrew the limit"
        assert t.credits > limit - journal.fmt.write_credits - 8, "each filled up to it"


def test_612_commits_fewer_larger_transactions_than_61(hotremove_build):
    old = journal_of(hotremove_build(pressure("6.1")))
    new = journal_of(hotremove_build(pressure("6.12")))
    assert new.forced_commits < old.forced_commits


def test_a_checkpoint_forced_by_log_space_writes_buffers_home_and_drops_heads(
    hotremove_build,
):
    """When the log runs short, the oldest transactions are checkpointed: their buffers are
    written to their home blocks (the golden bytes are on the image), lose their journal
    heads (BH_JBD, the reference ``b_count``) — and their pages stay PG_dirty, because a
    checkpoint writes buffers, not pages. The newest transactions keep theirs."""
    built = hotremove_build(pressure("6.1"))
    journal = journal_of(built)
    bdev = built.machine.superblocks[0].s_bdev
    bdev.flush()

    assert journal.checkpoints >= 1
    assert journal.log, "the newest transactions are not checkpointed"
    held = {bh for t in journal.log for bh in t.checkpoint}
    assert held and all(bh.b_state & BH_JBD and bh.b_state & BH_Dirty for bh in held)
    released = []
    for page in journalled_pages(built):
        bhs = page_buffers(page)
        if any(bh.b_state & BH_JBDDirty for bh in bhs):
            continue  # the running transaction's: 6.1 dirties the page at its commit
        assert page.flags & PG_dirty, "committed: dirty, checkpointed or not"
        released += [bh for bh in bhs if bh not in held]
    assert released
    golden = built.golden.files
    for bh in released:
        assert not bh.b_state & (BH_JBD | BH_Dirty | BH_JBDDirty) and bh.b_count == 0
        page = bh.b_page
        pos = page.index * PAGE_SIZE + bh.b_offset
        want = bytes(golden[("fs0", page.mapping.host.path)][pos : pos + bh.b_size])
        assert bdev.read_block(bh.b_blocknr)[: len(want)] == want
    assert built.machine.io.bytes_written == len(released) * 1024


def test_61_writeout_counts_checkpointed_pages_and_writes_only_dirty_buffers(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """6.1 (no ``migrate_folio`` for data=journal): ``writeout()`` is called for every dirty
    page — checkpointed ones too, which ``ext4_bio_write_page`` cycles through writeback with
    nothing to submit (NR_WRITTEN counts them) — and only the buffers still dirty go to
    the disk."""
    built = hotremove_build(pressure("6.1", blocks=(0,), placement="fill"))
    journal = journal_of(built)
    dirty_pages = [p for p in journalled_pages(built) if built.machine.memory.block_of(p.pfn) == 0]
    # the running transaction commits (5 s) before the offline (10 s): its buffers too
    pending = BH_Dirty | BH_JBDDirty
    still_dirty = sum(1 for p in dirty_pages for bh in page_buffers(p) if bh.b_state & pending)
    before = built.machine.io.bytes_written
    assert journal.checkpoints and still_dirty < sum(len(page_buffers(p)) for p in dirty_pages)

    result = hotremove_offline(built)

    assert result.offlined
    assert result.written_back == len(dirty_pages)
    assert built.machine.io.bytes_written - before == still_dirty * 1024
    assert hotremove_verify(built).ok


def test_612_checkpointed_pages_move_the_held_ones_stay(hotremove_build, hotremove_offline):
    """6.12's ``buffer_migrate_folio_norefs``: a checkpointed page (dirty, clean buffers, no
    journal head) moves; a page of the transactions still in the log does not (-EINTR)."""
    built = hotremove_build(pressure("6.12", remove={"timeout": 20.0}))
    journal = journal_of(built)
    memory = built.machine.memory
    in_block = [p for p in journalled_pages(built) if memory.block_of(p.pfn) == 1]
    every = {(p.mapping, p.index) for p in in_block}
    held = {
        (p.mapping, p.index) for p in in_block if any(bh.b_state & BH_JBD for bh in page_buffers(p))
    }
    assert journal.checkpoints and held and len(held) < len(every)

    result = hotremove_offline(built)

    assert not result.offlined and result.written_back == 0
    assert len(result.failed) == len(held)
    for mapping, index in every - held:
        page = mapping.i_pages[index]
        assert memory.block_of(page.pfn) != 1 and page.flags & PG_dirty, "moved, still dirty"


def test_writes_spread_over_time_commit_on_the_timer(hotremove_build):
    """``workload.write_seconds``: the writes take 120 simulated seconds, so kjournald2's
    5 s timer commits between them — smaller transactions than the size limit makes."""
    built = hotremove_build(pressure("6.12", write_seconds=120.0))
    journal = journal_of(built)
    assert built.machine.writes_end == pytest.approx(120.0)
    assert journal.commits >= 20 and journal.forced_commits == 0
