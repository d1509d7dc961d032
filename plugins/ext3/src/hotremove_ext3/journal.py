"""A small jbd2: running transaction, commit, checkpoint — enough to hold buffers the way
the real journal does.

In ``data=journal`` a write hands the data buffer to the journal
(``jbd2_journal_get_write_access`` + ``jbd2_journal_dirty_metadata``): a ``journal_head`` is
attached (``BH_JBD``, ``b_private``) and **takes a buffer reference** (``get_bh``), and the
buffer is ``BH_JBDDirty`` — dirty, but only the journal may write it. Commit writes the
transaction to the log (counted as one sequential journal request) and hands the buffers to
the checkpoint list with a real ``BH_Dirty``; checkpoint writes them to their home blocks and
drops the journal_head and its reference. Until then the ``_norefs`` migration rule refuses
to move those buffers.

In ``data=ordered`` (ext3's default) a dirtied data buffer stays an ordinary dirty buffer but
is filed on the running transaction's data list with a journal_head (``t_sync_datalist``):
commit writes it home *before* logging, then drops the head. Rebinding such a buffer is fine
(``buffer_migrate_folio`` ignores ``b_count``); the journal then writes it from its new page.
``data=writeback`` buffers never meet the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hotremove.model.address_space import SuperBlock
from hotremove.model.buffer_head import (
    BH_JBD,
    BH_Dirty,
    BH_JBDDirty,
    BufferHead,
    get_bh,
    mark_buffer_dirty,
    put_bh,
)
from hotremove.model.page import PG_dirty
from hotremove.writeback import clear_page_dirty, submit_block_runs

#: Descriptor block before, commit block after the data blocks of one transaction.
COMMIT_OVERHEAD_BLOCKS = 2


@dataclass
class JournalHead:
    """``struct journal_head``: the journal's claim on one buffer."""

    bh: BufferHead
    tid: int


@dataclass(eq=False)
class Jbd2Journal:
    sb: SuperBlock
    frames: np.ndarray
    tid: int = 1
    running: list[BufferHead] = field(default_factory=list)
    ordered: list[BufferHead] = field(default_factory=list)
    checkpoint_list: list[BufferHead] = field(default_factory=list)
    commits: int = 0
    checkpoints: int = 0

    def dirty_data(self, bh: BufferHead) -> None:
        """A write dirtied ``bh``: file it as the filesystem's data mode says."""
        mode = self.sb.data_mode
        if mode != "journal":
            mark_buffer_dirty(bh)
            if mode == "ordered" and not bh.b_state & BH_JBD:
                self._add_journal_head(bh)
                self.ordered.append(bh)
            return
        if not bh.b_state & BH_JBD:
            self._add_journal_head(bh)
        if not bh.b_state & BH_JBDDirty:
            bh.b_state |= BH_JBDDirty
            if bh not in self.running:
                self.running.append(bh)
        page = bh.b_page
        if not page.flags & PG_dirty:
            page.flags |= PG_dirty
            page.mapping.tag_dirty(page.index)

    def _add_journal_head(self, bh: BufferHead) -> None:
        """``jbd2_journal_add_journal_head``: BH_JBD, ``b_private`` and a buffer reference."""
        bh.b_state |= BH_JBD
        bh.b_private = JournalHead(bh, self.tid)
        get_bh(bh)

    def _write_home(self, bhs: list[BufferHead]) -> None:
        """Write the dirty ones of ``bhs`` to their home blocks — from whatever page each
        buffer points at *now* — then drop the journal heads."""
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
        except OSError:  # keep everything dirty and journal-held: the next commit retries
            for bh in written:
                bh.b_state |= BH_Dirty
            raise
        for bh in bhs:
            bh.b_state &= ~BH_JBD
            bh.b_private = None
            put_bh(bh)
            clear_page_dirty(bh.b_page.mapping, bh.b_page)

    def commit(self) -> None:
        """``jbd2_journal_commit_transaction``: ordered data goes home first, then the
        transaction is logged and its buffers may go home (``BH_JBDDirty`` → ``BH_Dirty`` on
        the checkpoint list)."""
        if not (self.ordered or self.running):
            return
        try:
            self._write_home(self.ordered)
        except OSError:
            return  # ordered data could not go home: the transaction waits for a later commit
        self.ordered = []
        if self.running:
            self.sb.s_bdev.account_journal_write(len(self.running) + COMMIT_OVERHEAD_BLOCKS)
            for bh in self.running:
                bh.b_state = (bh.b_state & ~BH_JBDDirty) | BH_Dirty
                self.checkpoint_list.append(bh)
            self.running = []
        self.commits += 1
        self.tid += 1

    def checkpoint(self) -> None:
        """``jbd2_log_do_checkpoint``: write committed buffers home, release their heads."""
        if not self.checkpoint_list:
            return
        try:
            self._write_home(self.checkpoint_list)
        except OSError:
            return  # checkpoint I/O error: the buffers stay on the list for the next try
        self.checkpoint_list = []
        self.checkpoints += 1

    def flush(self) -> None:
        """``jbd2_journal_flush``: commit and checkpoint everything."""
        self.commit()
        self.checkpoint()
