"""jbd2's log space and checkpoint list (fs/jbd2/checkpoint.c, the accounting of journal.c):
what happens to a journalled buffer after its transaction committed.

Read in Debian's Linux 6.1.192 and 6.12.118 (``linux-source-6.1`` 6.1.192-3,
``linux-source-6.12`` 6.12.118-1~deb12u1; the checkpoint code is the same in both — 6.1.y
has the 6.5–6.6 rework backported):

* A committed transaction holds ``log_blocks`` of the on-disk log until every buffer on its
  checkpoint list has been written home and released; then the log tail may pass it
  (``jbd2_cleanup_journal_tail`` → ``__jbd2_update_log_tail``: ``j_free`` grows).
* Before a handle joins a transaction, ``add_transaction_credits`` checks
  ``jbd2_log_space_left`` (``j_free - 32``) against ``j_max_transaction_buffers``; short, it
  calls ``__jbd2_log_wait_for_space``, which checkpoints **the oldest transaction, one at a
  time, until there is room** (``jbd2_log_do_checkpoint``) — not the whole list.
* ``jbd2_log_do_checkpoint`` writes the transaction's dirty buffers with
  ``write_dirty_buffer`` (``__flush_batch``): **buffers, not pages** — BH_Dirty is cleared,
  the page's PG_dirty is not — then ``__jbd2_journal_remove_checkpoint`` drops each journal
  head (``jbd2_journal_put_journal_head``: BH_JBD, the buffer reference). A buffer that a
  newer transaction journals again (``jh->b_transaction``) makes it commit that one first.
* ``__jbd2_journal_clean_checkpoint_list(JBD2_SHRINK_BUSY_STOP)`` at every commit releases
  buffers already written home (clean, unlocked, in no transaction), each transaction's list
  from its head until the first busy buffer.
* ``jbd2_journal_try_to_free_buffers`` (``->release_folio``) releases a page's written-back
  checkpointed buffers, then fails while any still has a head.

So after a checkpoint a page is PG_dirty with clean buffers and no journal head: 6.1's
``writeout()`` still "writes" it (``ext4_bio_write_page`` starts and ends writeback with
nothing to submit: NR_WRITTEN counts it), 6.12's ``buffer_migrate_folio_norefs`` moves it.
Metadata the transaction journalled (inode table blocks: ``i_mtime``) takes log space here
but is not written home: the simulator keeps no metadata buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hotremove.mm.page_writeback import submit_block_runs
from hotremove.model.buffer_head import (
    BH_JBD,
    BH_Dirty,
    BH_Lock,
    BufferHead,
    buffer_ring,
    get_bh,
    put_bh,
    try_to_free_buffers,
)
from hotremove.model.page import Page, PG_private

if TYPE_CHECKING:
    from hotremove.model.address_space import SuperBlock
    from hotremove.model.machine import Machine

#: ``jbd2_log_space_left``: "Allow for rounding errors" — 32 blocks of the log are never used.
LOG_SLACK = 32


@dataclass(eq=False)
class Transaction:
    """``transaction_t``: one running or committed transaction."""

    tid: int
    #: ``t_buffers``: data buffers journalled in it (BJ_Metadata), in the order they came
    buffers: list[BufferHead] = field(default_factory=list)
    #: metadata blocks journalled with them (inode table blocks: ``i_mtime``), by block
    meta: set[int] = field(default_factory=set)
    #: ``t_outstanding_credits``: the reserved descriptor blocks plus every modified buffer
    credits: int = 0
    #: blocks it took in the log (descriptors, buffers, commit block), set at commit
    log_blocks: int = 0
    #: ``t_checkpoint_list``: committed buffers not yet written home and released
    checkpoint: list[BufferHead] = field(default_factory=list)
    #: its commit timer is set (``t_expires``)
    armed: bool = False


@dataclass(eq=False)
class JournalHead:
    """``struct journal_head``: the journal's claim on one buffer (it holds a reference)."""

    bh: BufferHead
    tid: int
    #: ``b_transaction``: the running (or committing) transaction that journals the buffer
    transaction: Transaction | None = None
    #: ``b_next_transaction``: the running transaction that journals it again while
    #: ``transaction`` commits (the buffer moves to it when that commit refiles it)
    next_transaction: Transaction | None = None
    #: ``b_cp_transaction``: the committed transaction whose checkpoint list holds it
    cp_transaction: Transaction | None = None


@dataclass(eq=False)
class Jbd2Log:
    """The log and checkpoint half of a journal (``journal_t``): space, tail, checkpoints.
    :class:`hotremove.fs.jbd2.Jbd2Journal` adds transactions and commits."""

    sb: SuperBlock
    machine: Machine
    #: ``j_max_transaction_buffers`` (0: the log is of unknown size and never fills)
    max_transaction: int = 0
    #: ``j_free``: log blocks not taken by committed transactions the tail has not passed
    free: int = 0
    #: committed transactions still in the log, oldest first (the tail is the first)
    log: list[Transaction] = field(default_factory=list)
    checkpoints: int = 0
    #: journal heads released by checkpoint-list cleaning (not by a full checkpoint)
    cleaned: int = 0

    @property
    def capacity(self) -> int:
        """The on-disk log's size in blocks, ``j_total_len`` (0: unknown)."""
        return self.sb.journal_blocks

    @property
    def checkpoint_list(self) -> list[BufferHead]:
        """Every committed buffer still on a checkpoint list, oldest transaction first."""
        return [bh for t in self.log for bh in t.checkpoint]

    def commit_running(self) -> None:
        """Commit the running transaction (``jbd2_log_start_commit`` + wait)."""
        raise NotImplementedError

    # -- journal heads ------------------------------------------------------------------
    @staticmethod
    def add_journal_head(bh: BufferHead, tid: int) -> JournalHead:
        """``jbd2_journal_add_journal_head``: BH_JBD, ``b_private`` and a buffer reference."""
        jh = bh.b_private
        if bh.b_state & BH_JBD and isinstance(jh, JournalHead):
            return jh
        jh = JournalHead(bh, tid)
        bh.b_state |= BH_JBD
        bh.b_private = jh
        get_bh(bh)
        return jh

    @staticmethod
    def put_journal_head(bh: BufferHead) -> None:
        """``jbd2_journal_put_journal_head``: the head and its buffer reference go."""
        bh.b_state &= ~BH_JBD
        bh.b_private = None
        put_bh(bh)

    def remove_checkpoint(self, bh: BufferHead) -> None:
        """``__jbd2_journal_remove_checkpoint``: off its transaction's checkpoint list; the
        head goes unless a running transaction journals the buffer again."""
        jh = bh.b_private
        if not isinstance(jh, JournalHead) or jh.cp_transaction is None:
            return
        jh.cp_transaction.checkpoint.remove(bh)
        jh.cp_transaction = None
        if jh.transaction is None and jh.next_transaction is None:
            self.put_journal_head(bh)

    # -- space ----------------------------------------------------------------------------
    def log_space_left(self) -> int:
        """``jbd2_log_space_left``: free log blocks less the slack (commits here are done
        before the next handle asks, so no committing transaction is subtracted)."""
        return max(self.free - LOG_SLACK, 0)

    def cleanup_journal_tail(self) -> int:
        """``jbd2_cleanup_journal_tail``: the tail passes every transaction at the head of
        the log whose checkpoint list is empty; returns the blocks freed."""
        freed = 0
        while self.log and not self.log[0].checkpoint:
            freed += self.log.pop(0).log_blocks
        self.free += freed
        return freed

    def releasable(self) -> int:
        """Log blocks the tail could pass now (``jbd2_journal_get_log_tail``)."""
        freed = 0
        for t in self.log:
            if t.checkpoint:
                break
            freed += t.log_blocks
        return freed

    def wait_for_space(self) -> None:
        """``__jbd2_log_wait_for_space``: checkpoint the oldest transaction, again and again,
        until ``j_max_transaction_buffers`` blocks are free (or nothing is left to do)."""
        if not self.capacity:
            return
        while self.log_space_left() < self.max_transaction:
            if any(t.checkpoint for t in self.log):
                if not self.do_checkpoint():
                    return  # a write error: retried at the next handle
            elif not self.cleanup_journal_tail():
                return  # nothing to checkpoint and nothing to free: the kernel would abort

    def do_checkpoint(self) -> bool:
        """``jbd2_log_do_checkpoint``: the tail first; if it cannot move, write the oldest
        transaction's buffers home (``write_dirty_buffer``: BH_Dirty, not the page's
        PG_dirty), release them, move the tail. A buffer that the running transaction
        journals again commits that transaction first. False: a write failed (the buffers
        stay dirty on the list; the kernel records the error and aborts the journal later)."""
        if self.cleanup_journal_tail():
            return True
        t = next((t for t in self.log if t.checkpoint), None)
        if t is None:
            return False
        if any(_journalled_again(bh) for bh in t.checkpoint):
            self.commit_running()  # "cs_forced_to_close": commit, wait, start over
        try:
            self.write_dirty_buffers(list(t.checkpoint))
        except OSError:
            return False
        for bh in list(t.checkpoint):
            self.remove_checkpoint(bh)
        t.checkpoint.clear()  # every buffer written home and released
        self.checkpoints += 1
        self.cleanup_journal_tail()
        return True

    def write_dirty_buffers(self, bhs: list[BufferHead]) -> list[BufferHead]:
        """``write_dirty_buffer`` for each of ``bhs`` that is dirty: cleared, written from the
        page it points at now; the pages' PG_dirty stays. A write error keeps them dirty."""
        frames = self.machine.memory.frames
        written = [bh for bh in bhs if bh.b_state & BH_Dirty]
        blocks = []
        for bh in written:
            bh.b_state &= ~BH_Dirty
            start = bh.b_offset
            blocks.append((bh.b_blocknr, frames[bh.b_page.pfn][start : start + bh.b_size]))
        try:
            submit_block_runs(self.sb.s_bdev, blocks)
        except OSError:
            for bh in written:
                bh.b_state |= BH_Dirty
            raise
        return written

    def clean_checkpoint_list(self) -> int:
        """``__jbd2_journal_clean_checkpoint_list(JBD2_SHRINK_BUSY_STOP)``: in every committed
        transaction, release buffers written home, from the list's head (the last buffer
        filed) until the first busy one (dirty, locked, or journalled again)."""
        done = 0
        for t in self.log:
            for bh in reversed(list(t.checkpoint)):
                if bh.b_state & (BH_Dirty | BH_Lock) or _journalled_again(bh):
                    break
                self.remove_checkpoint(bh)
                done += 1
        self.cleaned += done
        return done

    def try_to_free_buffers(self, page: Page) -> bool:
        """``jbd2_journal_try_to_free_buffers`` (``->release_folio``): each buffer in turn
        that is checkpointed and written home loses its head; a buffer that keeps one makes
        it fail; then ``try_to_free_buffers``."""
        if page.flags & PG_private:
            for bh in buffer_ring(page.private):
                jh = bh.b_private
                if not bh.b_state & BH_JBD or not isinstance(jh, JournalHead):
                    continue
                if (
                    not _journalled_again(bh)
                    and jh.cp_transaction is not None
                    and not bh.b_state & (BH_Dirty | BH_Lock)
                ):
                    self.remove_checkpoint(bh)  # jbd2_journal_try_remove_checkpoint
                if bh.b_state & BH_JBD:
                    return False
        return try_to_free_buffers(page)


def _journalled_again(bh: BufferHead) -> bool:
    """``jh->b_transaction``: a running transaction journals the buffer again."""
    jh = bh.b_private
    return isinstance(jh, JournalHead) and (
        jh.transaction is not None or jh.next_transaction is not None
    )


__all__ = ["LOG_SLACK", "Jbd2Log", "JournalHead", "Transaction"]
