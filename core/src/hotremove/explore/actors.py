"""What runs alongside the migration: each actor is what a kernel thread or a system call does
to page-cache pages, written with the same lock primitives, so a scheduler can preempt it.

* ``writeback`` (the flusher, ``__block_write_full_folio``): page lock, lock each dirty
  buffer, clear its dirty bit, PG_writeback, page unlock; the I/O is in flight (buffers stay
  locked) until it completes: ``end_buffer_async_write`` unlocks them, the page leaves
  writeback.
* ``writer`` (``write()``: ``write_begin``/``write_end``): find the page, lock it, copy new
  bytes into some of its blocks, dirty those buffers (through the journal on ext3), unlock.
  The golden model gets the same bytes, exactly as the workload builder's writes.
* ``journal`` (kjournald): ext3's commit — ordered data buffers locked and written home
  (``journal_submit_data_buffers``: no page lock, no PG_writeback: only BH_Lock protects
  them), journalled data logged *from the page* without the buffer lock (jbd2 holds a
  buffer reference) — and checkpoint (buffers locked and written home, journal heads
  dropped). Serialised with the plugin's own ``flush`` by ``j_checkpoint_mutex``.
* ``reader`` (``read()``): find the page, take a reference, copy it out; the bytes must be
  what the last write put there.

Every I/O remembers the frame it reads from; :mod:`hotremove.explore.invariants` checks that
the frame still belongs to the buffer's page while the I/O is in flight.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hotremove.explore.focus import Focus
from hotremove.locking.lockdep import hand_to_io
from hotremove.mm.page_writeback import clear_page_dirty, writeout
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import (
    BH_JBD,
    BH_Async_Write,
    BH_Dirty,
    BH_JBDDirty,
    BH_Mapped,
    BufferHead,
    lock_buffer,
    page_buffers,
    unlock_buffer,
)
from hotremove.model.locks import Mutex, SpinLock, preempt
from hotremove.model.machine import Machine
from hotremove.model.page import (
    PAGE_SIZE,
    Page,
    PG_dirty,
    PG_private,
    PG_uptodate,
    PG_writeback,
    get_page,
    lock_page,
    put_page,
    unlock_page,
)
from hotremove.workload import page_cache_write

ACTORS = ("writeback", "writer", "journal", "reader")


@dataclass(eq=False)
class InFlight:
    """One block I/O between submission and completion: it reads ``pfn``'s frame."""

    actor: str
    bh: BufferHead
    pfn: int
    kind: str  # "write" (home block) | "log" (jbd2's log copy, no buffer lock)
    bdev: Any
    on_done: Callable[[], None] | None = None  # the bio's end_io (unlock_buffer ...)
    done: bool = False


class InvariantBroken(AssertionError):
    """An invariant the explorer checks broke (``kind`` names it in the finding)."""

    kind = "invariant"


class ForeignFrameIO(InvariantBroken):
    """I/O from a frame that no longer belongs to the buffer's page."""

    kind = "io_from_foreign_frame"


class StaleRead(InvariantBroken):
    """read() returned bytes that are not what the last write() put there."""

    kind = "stale_read"


def io_problem(io: InFlight, memory: Any) -> str | None:
    """Why ``io`` now reads a frame that is not its buffer's page's, or None."""
    bh = io.bh
    page = bh.b_page
    if page is not None and page.pfn == io.pfn and not memory.is_free(io.pfn):
        return None
    now = f"pfn {page.pfn:#x}" if page is not None else "no page (buffers freed)"
    state = "free" if memory.is_free(io.pfn) else "in use by another page"
    return (
        f"{io.actor} {'logs' if io.kind == 'log' else 'writes'} block {bh.b_blocknr} from "
        f"pfn {io.pfn:#x}, which no longer belongs to the buffer's page (frame {state}; the "
        f"buffer now points at {now})"
    )


@dataclass(eq=False)
class World:
    """What the actors share: the machine, the golden model, the I/O in flight."""

    machine: Machine
    golden: dict[tuple[str, str], bytearray]
    rng: random.Random
    inflight: list[InFlight] = field(default_factory=list)
    #: jbd2 per super_block: (j_checkpoint_mutex, j_list_lock)
    journal_locks: dict[int, tuple[Mutex, SpinLock]] = field(default_factory=dict)
    #: sleep until a condition holds (the scheduler's ``block``)
    wait: Callable[[Callable[[], bool], str], None] = lambda until, what: None
    #: True once every actor but the I/O completion one is done
    quiet: Callable[[], bool] = lambda: True
    #: a focused schedule's window (:mod:`hotremove.explore.focus`): the only pages touched
    focus: Focus | None = None

    def cached(self, want: Callable[[AddressSpace], bool]) -> list[tuple[AddressSpace, int]]:
        keys = self.focus.keys if self.focus is not None else None
        return [
            (mapping, index)
            for mapping in self.machine.mappings
            if want(mapping)
            for index in sorted(mapping.i_pages)
            if keys is None or (id(mapping), index) in keys
        ]

    # -- I/O ----------------------------------------------------------------------------------
    def submit(
        self,
        actor: str,
        bh: BufferHead,
        kind: str = "write",
        on_done: Callable[[], None] | None = None,
    ) -> InFlight:
        """``submit_bh``: the device reads the buffer's frame some time before completion;
        ``on_done`` runs in the completion context (:func:`io_completion`)."""
        bdev = bh.b_page.mapping.host.i_sb.s_bdev
        io = InFlight(actor, bh, bh.b_page.pfn, kind, bdev, on_done)
        self.inflight.append(io)
        if kind != "log":
            hand_to_io(bh)
        if self.focus is not None and not self.focus.covers(bh):
            self.complete(io)  # outside the window nobody can race with it: done at once
            return io
        preempt("submit_bh" if kind != "log" else "submit_bh(log)", bh)
        return io

    def complete(self, io: InFlight) -> None:
        """The device has read the frame (it must still be the page's): a home-block write
        lands on the image, a log write is counted; then the bio's end_io runs."""
        self.inflight.remove(io)
        problem = io_problem(io, self.machine.memory)
        if problem is not None:
            raise ForeignFrameIO(problem)
        bh = io.bh
        if io.kind == "log":
            io.bdev.account_journal_write(1)
        else:
            frame = self.machine.memory.frames[io.pfn]
            data = frame[bh.b_offset : bh.b_offset + bh.b_size].tobytes()
            io.bdev.submit_write(bh.b_blocknr, data)
        io.done = True
        if io.on_done is not None:
            io.on_done()

    def wait_on(self, ios: list[InFlight], what: str) -> None:
        """``wait_on_buffer`` for every I/O of ``ios``."""
        if any(not io.done for io in ios):
            self.wait(lambda: all(io.done for io in ios), what)


def find_get_page(mapping: AddressSpace, index: int) -> Page | None:
    """Look the page up and take a reference (atomic against migration's frozen swap)."""
    page = mapping.i_pages.get(index)
    if page is not None:
        get_page(page)
    return page


def find_lock_page(mapping: AddressSpace, index: int) -> Page | None:
    """``find_lock_page``: reference, lock, and recheck it is still this file's page."""
    while True:
        page = find_get_page(mapping, index)
        if page is None:
            return None
        lock_page(page)
        if page.mapping is mapping and mapping.i_pages.get(index) == page:
            return page
        unlock_page(page)  # migrated or truncated while we slept: look again
        put_page(page)


# -- the flusher -------------------------------------------------------------------------------
def writeback(world: World, ops: int) -> None:
    rng = world.rng
    for _ in range(ops):
        preempt("wb_scan")
        dirty = world.cached(lambda m: not m.a_ops.journalled_data)
        dirty = [(m, i) for m, i in dirty if i in m.dirty_tags]
        if not dirty:
            continue
        mapping, index = dirty[rng.randrange(len(dirty))]
        page = find_lock_page(mapping, index)
        if page is None:
            continue
        if page.flags & PG_writeback or not page.flags & PG_dirty:
            unlock_page(page)
            put_page(page)
            continue
        write_full_page(world, mapping, page)


def write_full_page(world: World, mapping: AddressSpace, page: Page) -> None:
    """``__block_write_full_folio`` + ``end_page_writeback``; entered with the page locked
    and referenced, returns with neither."""
    if not page.flags & PG_private:  # nobh: no buffers to lock, written under the page lock
        writeout(world.machine.memory.frames, mapping, page)
        unlock_page(page)
        put_page(page)
        return
    bhs = [bh for bh in page_buffers(page) if bh.b_state & BH_Dirty and bh.b_state & BH_Mapped]
    for bh in bhs:
        lock_buffer(bh)
    todo = [bh for bh in bhs if bh.b_state & BH_Dirty]  # test_clear_buffer_dirty
    for bh in bhs:
        if not bh.b_state & BH_Dirty:
            unlock_buffer(bh)
    pending = [len(todo)]

    def end_buffer_async_write(bh: BufferHead) -> None:
        bh.b_state &= ~BH_Async_Write
        unlock_buffer(bh)
        pending[0] -= 1
        if not pending[0]:
            page.flags &= ~PG_writeback  # end_page_writeback

    if todo:
        page.flags |= PG_writeback
    for bh in todo:
        bh.b_state = (bh.b_state & ~BH_Dirty) | BH_Async_Write
    clear_page_dirty(mapping, page)
    unlock_page(page)
    for bh in todo:
        world.submit("flush", bh, on_done=lambda bh=bh: end_buffer_async_write(bh))
    put_page(page)


def io_completion(world: World, ops: int) -> None:
    """The block layer's completion context: in-flight I/O finishes in any order, while the
    submitters go on (``end_buffer_async_write``, ``end_buffer_write_sync``)."""
    rng = world.rng
    while True:
        world.wait(lambda: bool(world.inflight) or world.quiet(), "io_schedule")
        if not world.inflight:
            return
        world.complete(world.inflight[rng.randrange(len(world.inflight))])
        preempt("irq_exit")


def _any_cached(world: World) -> tuple[AddressSpace, int] | None:
    """A random cached page of any file (what a write() or read() lands on), or None."""
    pages = world.cached(lambda m: True)
    return pages[world.rng.randrange(len(pages))] if pages else None


# -- write() -----------------------------------------------------------------------------------
def writer(world: World, ops: int) -> None:
    for _ in range(ops):
        preempt("write")
        picked = _any_cached(world)
        if picked is None:
            return
        mapping, index = picked
        page = find_lock_page(mapping, index)
        if page is None:
            continue
        preempt("copy_from_user", page)
        write_page(world, mapping, page)
        unlock_page(page)
        put_page(page)


def write_page(world: World, mapping: AddressSpace, page: Page) -> None:
    """Copy new bytes into some blocks of a locked page and dirty them."""
    rng = world.rng
    inode = mapping.host
    golden = world.golden[(inode.i_sb.s_id, inode.path)]
    bhs = [bh for bh in page_buffers(page) if bh.b_state & BH_Mapped]
    if mapping.a_ops.journalled_data:  # committed, not yet checkpointed: wait for jbd2
        bhs = [bh for bh in bhs if not (bh.b_state & BH_JBD and not bh.b_state & BH_JBDDirty)]
    if page.flags & PG_private:
        if not bhs:
            return
        bhs = rng.sample(bhs, rng.randint(1, len(bhs)))
    page_cache_write(world.machine, mapping, page, bhs, golden, rng.randbytes)


# -- read() ------------------------------------------------------------------------------------
def reader(world: World, ops: int) -> None:
    for _ in range(ops):
        preempt("read")
        picked = _any_cached(world)
        if picked is None:
            return
        mapping, index = picked
        page = find_get_page(mapping, index)
        if page is None:
            continue
        if not page.flags & PG_uptodate:  # a new page being filled: wait for its lock
            lock_page(page)
            unlock_page(page)
            put_page(page)
            continue
        preempt("copy_to_user", page)
        check_read(world, mapping, page)
        put_page(page)


def check_read(world: World, mapping: AddressSpace, page: Page) -> None:
    inode = mapping.host
    base = page.index * PAGE_SIZE
    length = min(PAGE_SIZE, inode.i_size - base)
    want = world.golden[(inode.i_sb.s_id, inode.path)][base : base + length]
    got = world.machine.memory.frames[page.pfn][:length].tobytes()
    if got != bytes(want):
        offset = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise StaleRead(
            f"read() of {inode.path} page {page.index} (pfn {page.pfn:#x}) returned stale "
            f"data at byte {base + offset}"
        )


# -- kjournald ---------------------------------------------------------------------------------
def journal(world: World, ops: int) -> None:
    rng = world.rng
    journals = [sb for sb in world.machine.superblocks if sb.s_journal is not None]
    for _ in range(ops):
        preempt("kjournald")
        if not journals:
            return
        sb = journals[rng.randrange(len(journals))]
        j = sb.s_journal
        mutex, list_lock = world.journal_locks[id(sb)]
        with mutex:
            if rng.random() < 0.6 and (j.ordered or j.running):  # type: ignore[union-attr]
                commit(world, j, list_lock)
            else:
                checkpoint(world, j, list_lock)


def commit(world: World, j: Any, list_lock: SpinLock) -> None:
    """``jbd2_journal_commit_transaction``: ordered data home first, then the log."""
    with list_lock:
        ordered, j.ordered = j.ordered, []
        running, j.running = j.running, None
    logged = running.buffers if running is not None else []
    ios = []
    for bh in ordered:  # journal_submit_data_buffers
        lock_buffer(bh)
        if bh.b_state & BH_Dirty:
            bh.b_state &= ~BH_Dirty
            ios.append(world.submit("kjournald", bh, on_done=lambda bh=bh: unlock_buffer(bh)))
        else:
            unlock_buffer(bh)
    # the log copy is made from the page itself: jbd2 holds a reference, not the lock
    ios += [world.submit("kjournald", bh, "log") for bh in logged]
    world.wait_on(ios, "jbd2_commit_wait")
    for bh in ordered:
        j.put_journal_head(bh)
    if running is not None:
        j.file_checkpoint(running)  # BH_JBDDirty → BH_Dirty, onto the checkpoint list
    j.commits += 1
    j.tid += 1


def checkpoint(world: World, j: Any, list_lock: SpinLock) -> None:
    """``jbd2_log_do_checkpoint``: the oldest transaction's buffers go home, their journal
    heads go (unless a newer transaction journals the buffer again)."""
    with list_lock:
        oldest = next((t for t in j.log if t.checkpoint), None)
        bhs = list(oldest.checkpoint) if oldest is not None else []
    if not bhs:
        return
    ios = []
    for bh in bhs:  # write_dirty_buffer
        lock_buffer(bh)
        if bh.b_state & BH_Dirty:
            bh.b_state &= ~BH_Dirty
            ios.append(world.submit("kjournald", bh, on_done=lambda bh=bh: unlock_buffer(bh)))
        else:
            unlock_buffer(bh)
    world.wait_on(ios, "jbd2_checkpoint_wait")
    with list_lock:
        for bh in bhs:
            j.remove_checkpoint(bh)
        j.cleanup_journal_tail()
    j.checkpoints += 1


BODIES: dict[str, Callable[[World, int], None]] = {
    "io": io_completion,
    "writeback": writeback,
    "writer": writer,
    "journal": journal,
    "reader": reader,
}
