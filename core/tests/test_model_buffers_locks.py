"""The simulated kernel objects keep the kernel's rules: rings, references, lock context."""

from __future__ import annotations

import pytest

from hotremove.model.address_space import AddressSpace, AddressSpaceOps, Inode, SuperBlock
from hotremove.model.buffer_head import (
    BH_Dirty,
    BH_Lock,
    BH_Mapped,
    BH_Uptodate,
    create_page_buffers,
    get_bh,
    lock_buffer,
    mark_buffer_dirty,
    page_buffers,
    put_bh,
    set_bh_page,
    try_to_free_buffers,
    trylock_buffer,
    unlock_buffer,
)
from hotremove.model.locks import DeadlockError, SpinLock, Task, running
from hotremove.model.memory import ISOLATED, PhysicalMemory
from hotremove.model.page import PG_dirty, PG_mappedtodisk, PG_private


def cached_page(memory: PhysicalMemory, blocknrs=(10, 11, 12, 13)):
    sb = SuperBlock("t", "ext2", 1024, s_bdev=None)  # type: ignore[arg-type]
    mapping = AddressSpace(Inode(12, "f", 4096, sb, list(blocknrs)), AddressSpaceOps("x", "ext2"))
    page = memory.alloc_page()
    page.mapping, page.index = mapping, 0
    mapping.i_pages[0] = page
    create_page_buffers(page, 1024, list(blocknrs), BH_Uptodate | BH_Mapped)
    return mapping, page


def test_buffer_ring_and_private_reference():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    _, page = cached_page(memory)
    bhs = page_buffers(page)
    assert [bh.b_blocknr for bh in bhs] == [10, 11, 12, 13]
    assert [bh.b_offset for bh in bhs] == [0, 1024, 2048, 3072]
    assert bhs[-1].b_this_page == bhs[0]
    assert page._refcount == 2 and page.flags & PG_private and page.flags & PG_mappedtodisk


def test_mark_buffer_dirty_dirties_one_buffer_and_the_page():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    mapping, page = cached_page(memory)
    mark_buffer_dirty(page_buffers(page)[2])
    assert [bool(bh.b_state & BH_Dirty) for bh in page_buffers(page)] == [0, 0, 1, 0]
    assert page.flags & PG_dirty and mapping.dirty_tags == {0}


def test_try_to_free_buffers_refuses_busy_buffers():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    _, page = cached_page(memory)
    bh = page_buffers(page)[1]
    get_bh(bh)
    assert not try_to_free_buffers(page)
    put_bh(bh)
    mark_buffer_dirty(bh)
    assert not try_to_free_buffers(page)
    bh.b_state &= ~BH_Dirty
    assert try_to_free_buffers(page)
    assert page._refcount == 1 and not page.flags & (PG_private | PG_dirty)


def test_set_bh_page_rebinds():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    _, page = cached_page(memory)
    new = memory.alloc_page()
    bh = page_buffers(page)[3]
    set_bh_page(bh, new, bh.b_offset)
    assert bh.b_page == new and bh.b_offset == 3072


def test_lock_buffer_under_a_spinlock_is_sleeping_in_atomic_context():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    mapping, page = cached_page(memory)
    task = Task()
    with running(task):
        bh = page_buffers(page)[0]
        with mapping.private_lock:
            lock_buffer(bh)
        unlock_buffer(bh)
        lock_buffer(bh)  # outside the spinlock: fine
        unlock_buffer(bh)
    assert len(task.violations) == 1
    violation = task.violations[0]
    assert violation.operation == "lock_buffer" and violation.held == ("f:private_lock",)
    assert violation.message.startswith("BUG: sleeping function called from invalid context")


def test_trylock_never_sleeps_and_contended_lock_waits_for_its_holder():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    _, page = cached_page(memory)
    bh = page_buffers(page)[0]
    assert trylock_buffer(bh) and not trylock_buffer(bh)
    task = Task()
    with running(task), pytest.raises(DeadlockError):
        lock_buffer(bh)  # nobody will ever unlock it

    def io_completes(obj):
        unlock_buffer(obj)  # end_buffer_write_sync
        return True

    task.waiter = io_completes
    with running(task):
        lock_buffer(bh)
    assert bh.b_state & BH_Lock and task.violations == []


def test_allocator_never_hands_out_isolated_frames():
    memory = PhysicalMemory(4 << 20, 1 << 20)
    for block in (0, 1, 2):
        memory.set_block_state(block, ISOLATED)
    pages = [memory.alloc_page() for _ in range(256)]
    assert all(memory.block_of(p.pfn) == 3 for p in pages)
    assert memory.alloc_page() is None
    spin = SpinLock("x")
    with running(Task()) as task:
        spin.lock()
        assert task.in_atomic
        spin.unlock()
        assert not task.in_atomic
