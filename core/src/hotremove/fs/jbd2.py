"""jbd2, small: running transaction, commit timer, checkpoint list — enough to hold buffers
the way the real journal does, for every filesystem plugin that journals (ext3, ext4).

In ``data=journal`` a write hands the data buffer to the journal
(``jbd2_journal_get_write_access`` + ``jbd2_journal_dirty_metadata``): a ``journal_head`` is
attached (``BH_JBD``, ``b_private``) and **takes a buffer reference** (``get_bh``), and the
buffer is ``BH_JBDDirty`` — dirty, but only the journal may write it. The transaction commits
``commit_interval`` seconds after it started (kjournald2's timer, ``j_commit_interval``, 5 s):
the log is written (one sequential journal request) and the buffers go to the checkpoint list
with a real ``BH_Dirty`` — still holding their journal_head. Writeback (the flusher, a
``writeout()``) then writes them home, but the journal_head stays until the journal **cleans
its checkpoint list**: at a later commit (``__jbd2_journal_clean_checkpoint_list``), when the
log needs space, at ``sync`` (commit + ``jbd2_log_do_checkpoint``), or when a releaser asks
(``jbd2_journal_try_to_free_buffers``, ``->release_folio``). An idle filesystem commits
nothing, so written buffers can keep their heads — and ``buffer_migrate_folio_norefs`` refuses
them (Linux 6.12, kernel-reference "Observed on real kernels").

In ``data=ordered`` the old ext3 driver filed a dirtied data buffer on the running
transaction's data list with a journal_head (``t_sync_datalist``): commit writes it home
*before* logging, then drops the head (``ordered_data_heads``). ext4 tracks ordered data by
inode (``jbd2_inode``) and an overwrite of allocated blocks never meets the journal.
``data=writeback`` buffers never meet the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hotremove.mm.page_writeback import clear_page_dirty, submit_block_runs
from hotremove.model.buffer_head import (
    BH_JBD,
    BH_Dirty,
    BH_JBDDirty,
    BH_Lock,
    BufferHead,
    buffer_ring,
    get_bh,
    mark_buffer_dirty,
    put_bh,
    try_to_free_buffers,
)
from hotremove.model.page import Page, PG_dirty, PG_private

if TYPE_CHECKING:
    from hotremove.model.address_space import AddressSpace, SuperBlock
    from hotremove.model.machine import Machine

#: Descriptor block before, commit block after the data blocks of one transaction.
COMMIT_OVERHEAD_BLOCKS = 2
#: ``JBD2_DEFAULT_MAX_COMMIT_AGE``: a transaction commits this long after it started.
JBD2_DEFAULT_MAX_COMMIT_AGE = 5.0


@dataclass
class JournalHead:
    """``struct journal_head``: the journal's claim on one buffer."""

    bh: BufferHead
    tid: int


@dataclass(eq=False)
class Jbd2Journal:
    """One filesystem's journal (``sb.s_journal``)."""

    sb: SuperBlock
    machine: Machine
    #: the ext3 driver's ordered mode put journal heads on dirty data buffers
    ordered_data_heads: bool = False
    commit_interval: float = JBD2_DEFAULT_MAX_COMMIT_AGE
    tid: int = 1
    running: list[BufferHead] = field(default_factory=list)
    ordered: list[BufferHead] = field(default_factory=list)
    checkpoint_list: list[BufferHead] = field(default_factory=list)
    commits: int = 0
    checkpoints: int = 0
    #: journal heads released by checkpoint-list cleaning (not by a full checkpoint)
    cleaned: int = 0
    #: log blocks taken by committed transactions not yet checkpointed
    log_used: int = 0
    _timer_armed: bool = False

    @property
    def capacity(self) -> int:
        """The on-disk log's size in blocks (0: unknown — the log never fills)."""
        return self.sb.journal_blocks

    @property
    def max_transaction(self) -> int:
        """``j_max_transaction_buffers``: a quarter of the log; a fuller running transaction
        is committed at once (``jbd2_journal_get_max_txn_bufs``)."""
        return self.capacity // 4

    @property
    def frames(self):
        return self.machine.memory.frames

    # -- writes -------------------------------------------------------------------------
    def dirty_data(self, bh: BufferHead) -> None:
        """A write dirtied ``bh``: file it as the filesystem's data mode says."""
        mode = self.sb.data_mode
        if mode != "journal":
            mark_buffer_dirty(bh)
            if mode == "ordered" and self.ordered_data_heads and not bh.b_state & BH_JBD:
                self._add_journal_head(bh)
                self.ordered.append(bh)
                self._start_transaction()
            return
        if not bh.b_state & BH_JBD:
            self._add_journal_head(bh)
        if not bh.b_state & BH_JBDDirty:
            bh.b_state |= BH_JBDDirty
            if bh not in self.running:
                self.running.append(bh)
                self._start_transaction()
                full = self.max_transaction
                if full and len(self.running) + COMMIT_OVERHEAD_BLOCKS >= full:
                    self.commit()  # start_this_handle: no credits left, commit and go on
        page = bh.b_page
        if not page.flags & PG_dirty:
            page.flags |= PG_dirty
            page.mapping.tag_dirty(page.index)

    def _start_transaction(self) -> None:
        """The running transaction got its first buffer: arm the commit timer."""
        if self._timer_armed:
            return
        self._timer_armed = True
        timers = self.machine.timers
        timers.add_timer(
            self.machine.clock.now + self.commit_interval, f"jbd2/{self.sb.s_id}", self._expire
        )

    def _expire(self) -> None:
        """``commit_timeout``: kjournald2 wakes and commits the running transaction."""
        self._timer_armed = False
        self.commit()

    def _add_journal_head(self, bh: BufferHead) -> None:
        """``jbd2_journal_add_journal_head``: BH_JBD, ``b_private`` and a buffer reference."""
        bh.b_state |= BH_JBD
        bh.b_private = JournalHead(bh, self.tid)
        get_bh(bh)

    @staticmethod
    def _put_journal_head(bh: BufferHead) -> None:
        """``jbd2_journal_put_journal_head``: the head and its buffer reference go."""
        bh.b_state &= ~BH_JBD
        bh.b_private = None
        put_bh(bh)

    # -- I/O ------------------------------------------------------------------------------
    def _write_home(self, bhs: list[BufferHead]) -> list[BufferHead]:
        """Write the dirty ones of ``bhs`` to their home blocks — from whatever page each
        buffer points at *now*; returns the buffers written. A write error keeps them dirty."""
        blocks = []
        written = []
        for bh in bhs:
            if bh.b_state & BH_Dirty:
                bh.b_state &= ~BH_Dirty
                written.append(bh)
                start = bh.b_offset
                blocks.append((bh.b_blocknr, self.frames[bh.b_page.pfn][start : start + bh.b_size]))
        try:
            submit_block_runs(self.sb.s_bdev, blocks)
        except OSError:  # keep everything dirty and journal-held: a later write retries
            for bh in written:
                bh.b_state |= BH_Dirty
            raise
        for bh in written:
            clear_page_dirty(bh.b_page.mapping, bh.b_page)
        return written

    def commit(self) -> None:
        """``jbd2_journal_commit_transaction``: ordered data goes home first, then the
        transaction is logged and its buffers go to the checkpoint list (``BH_JBDDirty`` →
        ``BH_Dirty``, journal head kept); buffers written home since are cleaned off it."""
        if self.ordered:
            try:
                self._write_home(self.ordered)
            except OSError:
                return  # ordered data could not go home: the transaction waits
            for bh in self.ordered:
                self._put_journal_head(bh)
            self.ordered = []
        if self.running:
            nblocks = len(self.running) + COMMIT_OVERHEAD_BLOCKS
            if self.capacity and self.capacity - self.log_used < nblocks + self.max_transaction:
                self.checkpoint()  # __jbd2_log_wait_for_space: the log is full, make room
            self.sb.s_bdev.account_journal_write(nblocks)
            self.log_used += nblocks
            for bh in self.running:
                bh.b_state = (bh.b_state & ~BH_JBDDirty) | BH_Dirty
                self.checkpoint_list.append(bh)
            self.running = []
        self.clean_checkpoint_list()
        self.commits += 1
        self.tid += 1

    def clean_checkpoint_list(self) -> int:
        """``__jbd2_journal_clean_checkpoint_list``: buffers on the checkpoint list that were
        written home (clean, unlocked) lose their journal head. Returns how many."""
        keep = []
        done = 0
        for bh in self.checkpoint_list:
            if bh.b_state & (BH_Dirty | BH_Lock):
                keep.append(bh)
            else:
                self._put_journal_head(bh)
                done += 1
        self.checkpoint_list = keep
        self.cleaned += done
        if not keep:
            self.log_used = 0  # every transaction checkpointed: the log tail moves up
        return done

    def checkpoint(self) -> None:
        """``jbd2_log_do_checkpoint``: write committed buffers home, release their heads."""
        if not self.checkpoint_list:
            return
        try:
            self._write_home(self.checkpoint_list)
        except OSError:
            return  # checkpoint I/O error: the buffers stay on the list for the next try
        for bh in self.checkpoint_list:
            self._put_journal_head(bh)
        self.checkpoint_list = []
        self.log_used = 0
        self.checkpoints += 1

    def flush(self) -> None:
        """``jbd2_journal_flush`` (what ``sync`` amounts to): commit and checkpoint all."""
        self.commit()
        self.checkpoint()

    # -- writeback and release, as the mm asks ---------------------------------------------
    def writepages(self, mapping: AddressSpace, pages: list[Page]) -> int:
        """Writeback of journalled data (the flusher, ``writeout()``): the committed dirty
        buffers of ``pages`` go home; their journal heads stay until the checkpoint list is
        cleaned. Buffers of the running transaction are the journal's to write (at commit).
        Returns the pages written."""
        mine = {p.pfn for p in pages}
        batch = [bh for bh in self.checkpoint_list if bh.b_page.pfn in mine]
        written = self._write_home(batch)
        return len({bh.b_page.pfn for bh in written})

    def try_to_free_buffers(self, page: Page) -> bool:
        """``jbd2_journal_try_to_free_buffers`` (``->release_folio``): buffers that are
        committed and written home lose their journal head, then the buffers are freed if
        nothing else holds them."""
        if page.flags & PG_private:
            ring = buffer_ring(page.private)
            if any(bh.b_state & (BH_JBDDirty | BH_Dirty | BH_Lock) for bh in ring):
                return False
            listed = {bh for bh in self.checkpoint_list}
            for bh in ring:
                if bh in listed:
                    self._put_journal_head(bh)
                    self.checkpoint_list.remove(bh)
        return try_to_free_buffers(page)


def attach_journal(machine: Machine, sb: SuperBlock, *, ordered_data_heads: bool) -> Jbd2Journal:
    """Give ``sb`` a journal (a plugin's ``hotremove_mount`` calls this for its images)."""
    journal = Jbd2Journal(sb, machine, ordered_data_heads=ordered_data_heads)
    sb.s_journal = journal
    return journal


__all__ = [
    "COMMIT_OVERHEAD_BLOCKS",
    "JBD2_DEFAULT_MAX_COMMIT_AGE",
    "Jbd2Journal",
    "JournalHead",
    "attach_journal",
]
