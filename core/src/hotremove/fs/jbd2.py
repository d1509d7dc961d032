"""jbd2: running transaction, commits, and the buffers they hold — for every filesystem plugin
that journals (ext3, ext4). The log and checkpoint half is :mod:`hotremove.fs.jbd2_checkpoint`.

Read in Debian's Linux 6.1.192 and 6.12.118 (fs/jbd2/transaction.c, commit.c, journal.c;
fs/ext4/inode.c):

* **A write** (``ext4_write_begin`` → ``ext4_journal_start`` with
  ``ext4_writepage_trans_blocks() + 1`` credits, then ``write_end_fn`` →
  ``jbd2_journal_dirty_metadata`` per buffer) hands each data buffer to the running
  transaction: a ``journal_head`` (``BH_JBD``, ``b_private``, **a buffer reference**) and
  ``BH_JBDDirty`` — dirty, but only the journal may write it. 6.1 leaves the page clean
  (``write_end_fn`` → ``ext4_handle_dirty_metadata``); 6.12 marks it dirty at once
  (``ext4_dirty_journalled_data`` → ``folio_mark_dirty``, Jan Kara's data=journal rework,
  ≈ v6.5). Each ``write()`` also journals the inode's table block (``i_mtime``).
* **A transaction is forced to commit by its size** (``add_transaction_credits``): a handle
  whose credits would take ``t_outstanding_credits`` past the limit starts the commit and
  waits for a new transaction. ``t_outstanding_credits`` starts at the reserved descriptor
  blocks and grows by one per buffer first modified in the transaction. The limit is
  ``j_max_transaction_buffers`` = a quarter of the log in 6.1 (``jbd2_journal_get_max_txn_bufs``:
  ``j_total_len / 4``), a third in 6.12 (``/ 3``, the reserve precomputed in
  ``j_transaction_overhead_buffers``; Jan Kara, 2024, ≈ v6.10; ``jbd2_max_user_trans_buffers``,
  the limit less that reserve, bounds only reserved credits). Otherwise it commits
  ``j_commit_interval`` (5 s) after it started (``t_expires``, kjournald2's timer).
* **A commit** (``jbd2_journal_commit_transaction``) first cleans the checkpoint list, writes
  the buffers to the log (descriptor blocks of ``tags_per_block`` tags, the buffers, a commit
  block), then refiles each buffer: ``__jbd2_journal_temp_unlink_buffer`` turns BH_JBDDirty
  into a real dirty buffer with ``mark_buffer_dirty`` (**which dirties the page**: 6.1's
  journalled pages become dirty only here) and ``__jbd2_journal_insert_checkpoint`` files it
  on the transaction's checkpoint list — **with its journal head**.
* From there :mod:`~hotremove.fs.jbd2_checkpoint`: the head goes when a checkpoint (forced by
  log space) writes the buffer home, when a later commit finds it written home, or when a
  releaser asks. Writeback (the flusher, ``writeout()``) writes the buffer but leaves the
  head. An idle filesystem commits nothing, so written buffers can keep their heads — and
  6.12's ``buffer_migrate_folio_norefs`` refuses them (kernel-reference "Observed").

Other versions (not read here; for whoever adds them): 5.10 should behave as 6.1 — a
quarter of the log, ``write_end_fn`` → ``ext4_handle_dirty_metadata`` (page clean until the
commit), ``ext4_bio_write_page`` setting writeback before it knows there is nothing to
submit — though its checkpoint code predates the 6.5 rework (``t_checkpoint_io_list``);
7.2 as 6.12. Check ``jbd2_journal_get_max_txn_bufs``, ``write_end_fn`` and
``ext4_bio_write_folio`` in their trees.

In ``data=ordered`` the old ext3 driver filed a dirtied data buffer on the running
transaction's data list with a journal_head (``t_sync_datalist``): commit writes it home
*before* logging, then drops the head (``ordered_data_heads``). ext4 tracks ordered data by
inode (``jbd2_inode``) and an overwrite of allocated blocks never meets the journal.
``data=writeback`` buffers never meet the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hotremove.fs.jbd2_checkpoint import Jbd2Log, JournalHead, Transaction
from hotremove.mm.page_writeback import clear_page_dirty
from hotremove.model.buffer_head import (
    BH_JBD,
    BH_Dirty,
    BH_JBDDirty,
    BufferHead,
    mark_buffer_dirty,
    page_buffers,
)
from hotremove.model.page import Page, PG_dirty

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.model.address_space import AddressSpace, SuperBlock
    from hotremove.model.machine import Machine

#: ``JBD2_DEFAULT_MAX_COMMIT_AGE``: a transaction commits this long after it started.
JBD2_DEFAULT_MAX_COMMIT_AGE = 5.0
#: ``journal_header_t`` (12 bytes) and the UUID after the first tag (16) in a descriptor block.
_DESCRIPTOR_HEADER = 12 + 16
#: ``struct jbd2_journal_block_tail``: a descriptor's checksum (csum v2/v3).
_BLOCK_TAIL = 4
#: bytes of an inode in the inode table unless the filesystem says otherwise
#: (:attr:`JournalFormat.inode_size`).
INODE_SIZE = 256


@dataclass(frozen=True)
class JournalFormat:
    """What the filesystem's journal looks like to jbd2: its tag size, and the credits one
    page's ``write()`` asks for (the filesystem's own formula)."""

    #: ``journal_tag_bytes``: 16 with csum v3 (ext4's metadata_csum), 8 without 64bit/csum
    tag_bytes: int = 8
    #: credits of one page's write handle (``ext4_writepage_trans_blocks() + 1`` for ext4)
    write_credits: int = 1
    #: bytes of an inode in the inode table: which table block a file's inode update dirties
    inode_size: int = INODE_SIZE


def tags_per_block(blocksize: int, tag_bytes: int) -> int:
    """Tags in one descriptor block (``jbd2_descriptor_blocks_per_trans``)."""
    tail = _BLOCK_TAIL if tag_bytes == 16 else 0
    return max((blocksize - _DESCRIPTOR_HEADER - tail - 16) // tag_bytes, 1)


def max_transaction_buffers(kernel: Kernel, log_blocks: int) -> int:
    """``j_max_transaction_buffers`` (``jbd2_journal_get_max_txn_bufs``): a quarter of the
    log up to 6.9 (and jbd in 2004), a third from 6.10."""
    newer = kernel.version != "2004" and kernel.at_least("6.10")
    return log_blocks // 3 if newer else log_blocks // 4


@dataclass(eq=False)
class Jbd2Journal(Jbd2Log):
    """One filesystem's journal (``sb.s_journal``)."""

    #: the ext3 driver's ordered mode put journal heads on dirty data buffers
    ordered_data_heads: bool = False
    fmt: JournalFormat = field(default_factory=JournalFormat)
    commit_interval: float = JBD2_DEFAULT_MAX_COMMIT_AGE
    tid: int = 1
    running: Transaction | None = None
    ordered: list[BufferHead] = field(default_factory=list)
    commits: int = 0
    #: commits forced by a transaction's size (the rest: the timer, sync, a checkpoint)
    forced_commits: int = 0
    #: the descriptor blocks a transaction reserves (``t_outstanding_credits`` at start)
    overhead: int = 0
    _handle_page: int = -1  # the page the current write handle is for (one per page)

    def __post_init__(self) -> None:
        kernel = self.machine.kernel
        self.max_transaction = max_transaction_buffers(kernel, self.capacity)
        self.free = max(self.capacity - 1, 0)  # j_last - j_first: block 0 is the superblock
        if kernel.version != "2004":  # jbd (2004) reserved no descriptor blocks
            tags = tags_per_block(self.sb.s_blocksize, self.fmt.tag_bytes)
            self.overhead = 1 + -(-self.max_transaction // tags)
        #: 6.12 dirties the page at write (``ext4_dirty_journalled_data``); 6.1 at commit
        self.dirty_at_write = kernel.version != "2004" and kernel.at_least("6.5")

    # -- writes -------------------------------------------------------------------------
    def dirty_data(self, bh: BufferHead) -> None:
        """A write dirtied ``bh``: file it as the filesystem's data mode says. Buffers come
        page by page; each page is one handle (``ext4_write_begin`` … ``write_end``)."""
        mode = self.sb.data_mode
        if mode != "journal":
            mark_buffer_dirty(bh)
            if mode == "ordered" and self.ordered_data_heads and not bh.b_state & BH_JBD:
                self.add_journal_head(bh, self.tid)
                self.ordered.append(bh)
                self._arm(self._running())
            return
        page = bh.b_page
        if page.pfn != self._handle_page:
            self._handle_page = page.pfn
            self.start_handle(self.fmt.write_credits)
            self._journal_inode(page)
        self._dirty_metadata(bh)
        if self.dirty_at_write and not page.flags & PG_dirty:
            page.flags |= PG_dirty
            page.mapping.tag_dirty(page.index)

    def end_write(self) -> None:
        """The write is over: the next buffer starts a new handle."""
        self._handle_page = -1

    def start_handle(self, credits: int) -> Transaction:
        """``start_this_handle`` → ``add_transaction_credits``: too big a transaction is
        committed first; then, short of log space, checkpoint (``__jbd2_log_wait_for_space``)."""
        t = self.running
        limit = self.max_transaction
        if t is not None and limit and t.credits + credits > limit:
            self.forced_commits += 1
            self.commit()  # wait_transaction_locked → jbd2_log_start_commit
        t = self._running()
        if self.capacity and self.log_space_left() < self.max_transaction:
            self.wait_for_space()
        return t

    def _running(self) -> Transaction:
        """The running transaction, started (``jbd2_get_transaction``) if there is none."""
        if self.running is None:
            self.running = Transaction(self.tid, credits=self.overhead)
            self._arm(self.running)
        return self.running

    def _journal_inode(self, page: Page) -> None:
        """``file_update_time`` → ``ext4_dirty_inode``: the inode's table block joins the
        running transaction (once per transaction)."""
        t = self.running
        inode = page.mapping.host
        block = (inode.i_ino - 1) // max(self.sb.s_blocksize // self.fmt.inode_size, 1)
        if t is not None and block not in t.meta:
            t.meta.add(block)
            t.credits += 1

    def _dirty_metadata(self, bh: BufferHead) -> None:
        """``do_journal_get_write_access`` + ``jbd2_journal_dirty_metadata``: the buffer joins
        the running transaction (a committed dirty buffer's BH_Dirty becomes BH_JBDDirty:
        ``test_clear_buffer_dirty``); the first modification takes a credit."""
        t = self.running
        assert t is not None
        jh = self.add_journal_head(bh, t.tid)
        if jh.transaction is not t and jh.next_transaction is not t:
            if jh.transaction is None:
                jh.transaction = t
            else:  # its transaction is committing: it joins t when that refiles it
                jh.next_transaction = t
            jh.tid = t.tid
            t.buffers.append(bh)
            t.credits += 1
        bh.b_state = (bh.b_state & ~BH_Dirty) | BH_JBDDirty

    def _arm(self, t: Transaction) -> None:
        """``t_expires``: kjournald2 commits ``t`` ``j_commit_interval`` after it started."""
        if t.armed:
            return
        t.armed = True
        self.machine.timers.add_timer(
            self.machine.clock.now + self.commit_interval,
            f"jbd2/{self.sb.s_id}",
            lambda tid=t.tid: self._expire(tid),
        )

    def _expire(self, tid: int) -> None:
        """``commit_timeout``: kjournald2 commits the transaction if it is still running."""
        if self.running is not None and self.running.tid == tid:
            self.commit()

    # -- commit ---------------------------------------------------------------------------
    def commit(self) -> None:
        """``jbd2_journal_commit_transaction``: checkpoint list cleaned, ordered data home
        first, the transaction logged, each buffer refiled dirty (``mark_buffer_dirty``:
        the page too) onto the transaction's checkpoint list with its head."""
        self.clean_checkpoint_list()
        if self.ordered:
            try:
                written = self.write_dirty_buffers(self.ordered)
            except OSError:
                return  # ordered data could not go home: the transaction waits
            for bh in written:
                clear_page_dirty(bh.b_page.mapping, bh.b_page)
            for bh in self.ordered:
                self.put_journal_head(bh)
            self.ordered = []
        t, self.running = self.running, None
        self._handle_page = -1
        if t is not None and (t.buffers or t.meta):
            self._log(t)
        self.commits += 1
        self.tid += 1
        if self.releasable() >= self.max_transaction:
            self.cleanup_journal_tail()  # commit moves the tail when it frees enough

    def _log(self, t: Transaction) -> None:
        """Write ``t`` to the log (one sequential request), then file its buffers."""
        self.sb.s_bdev.account_journal_write(self.log_blocks(t))
        self.file_checkpoint(t)

    def log_blocks(self, t: Transaction) -> int:
        """The log blocks ``t`` takes: descriptor blocks of ``tags_per_block`` tags, every
        buffer (data and metadata), the commit block."""
        nbuf = len(t.buffers) + len(t.meta)
        tags = tags_per_block(self.sb.s_blocksize, self.fmt.tag_bytes)
        return nbuf + -(-nbuf // tags) + 1

    def file_checkpoint(self, t: Transaction) -> None:
        """The end of ``t``'s commit: its log blocks are taken from ``j_free`` and each
        buffer is refiled — BH_JBDDirty becomes BH_Dirty through ``mark_buffer_dirty`` (the
        page too) — onto ``t``'s checkpoint list, keeping its journal head."""
        t.log_blocks = self.log_blocks(t)
        self.free -= t.log_blocks
        now = self.machine.clock.now
        for bh in t.buffers:
            jh = bh.b_private
            assert isinstance(jh, JournalHead)
            if jh.cp_transaction is not None:
                self.remove_checkpoint(bh)  # "remove from old cp transaction"
            jh.cp_transaction = t
            t.checkpoint.append(bh)
            if jh.next_transaction is not None:  # __jbd2_journal_refile_buffer: still
                jh.transaction, jh.next_transaction = jh.next_transaction, None  # journalled
                continue
            jh.transaction = None
            bh.b_state &= ~BH_JBDDirty
            mark_buffer_dirty(bh)  # __jbd2_journal_temp_unlink_buffer: the page too
            bh.b_page.mapping.mark_dirtied(now)
        self.log.append(t)

    def commit_running(self) -> None:
        self.commit()

    def flush(self) -> None:
        """``jbd2_journal_flush`` (what ``sync`` amounts to): commit and checkpoint all."""
        self.commit()
        while any(t.checkpoint for t in self.log):
            if not self.do_checkpoint():
                break  # a write error: the buffers stay listed for the next try
        self.cleanup_journal_tail()

    # -- writeback, as the mm asks ----------------------------------------------------------
    def writepages(self, mapping: AddressSpace, pages: list[Page]) -> int:
        """Writeback of journalled data (the flusher): each dirty page's committed dirty
        buffers go home and the page is cleaned unless the running transaction still owns
        a buffer; the journal heads stay until the checkpoint list is cleaned. Returns the
        pages cleaned (``ext4_bio_write_page`` counts a page with nothing to submit too)."""
        written = 0
        for page in pages:
            if not page.flags & PG_dirty or page.private is None:
                continue
            self.write_dirty_buffers(page_buffers(page))
            clear_page_dirty(mapping, page)
            written += not page.flags & PG_dirty
        return written


def attach_journal(
    machine: Machine,
    sb: SuperBlock,
    *,
    ordered_data_heads: bool,
    fmt: JournalFormat | None = None,
) -> Jbd2Journal:
    """Give ``sb`` a journal (a plugin's ``hotremove_mount`` calls this for its images)."""
    journal = Jbd2Journal(
        sb, machine, ordered_data_heads=ordered_data_heads, fmt=fmt or JournalFormat()
    )
    sb.s_journal = journal
    return journal


__all__ = [
    "INODE_SIZE",
    "JBD2_DEFAULT_MAX_COMMIT_AGE",
    "Jbd2Journal",
    "JournalFormat",
    "JournalHead",
    "Transaction",
    "attach_journal",
    "max_transaction_buffers",
    "tags_per_block",
]
