"""The lock checker: sleeping in atomic context and lockdep-style lock order, strict mode."""

from __future__ import annotations

import pytest

from hotremove.locking import lockdep
from hotremove.locking.lockdep import LockdepStop, checking
from hotremove.model import buffer_head, locks, page
from hotremove.model.address_space import AddressSpace, AddressSpaceOps, Inode, SuperBlock
from hotremove.model.buffer_head import (
    BH_Mapped,
    BH_Uptodate,
    create_page_buffers,
    lock_buffer,
    page_buffers,
    trylock_buffer,
    unlock_buffer,
)
from hotremove.model.locks import Mutex, SpinLock, Task, running
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import lock_page, unlock_page


def cached_page(memory: PhysicalMemory, path: str = "f"):
    sb = SuperBlock("t", "ext2", 1024, s_bdev=None)  # type: ignore[arg-type]
    mapping = AddressSpace(
        Inode(12, path, 4096, sb, [10, 11, 12, 13]), AddressSpaceOps("x", "ext2")
    )
    pg = memory.alloc_page()
    pg.mapping, pg.index = mapping, 0
    mapping.i_pages[0] = pg
    create_page_buffers(pg, 1024, [10, 11, 12, 13], BH_Uptodate | BH_Mapped)
    return mapping, pg


def move_buffers_like_the_seed(mapping, pg):
    """spin_lock(private_lock) then lock_buffer: the seed's remap_move_buffer_ext2."""
    with mapping.private_lock:
        for bh in page_buffers(pg):
            lock_buffer(bh)


def exchange_like_the_seed(mapping, pg):
    """Buffer locks held, then private_lock: the seed's remap_exchange_pages."""
    with mapping.private_lock:
        for bh in page_buffers(pg):
            unlock_buffer(bh)


def test_sleeping_in_atomic_names_the_spinlock_the_sleeping_call_and_the_call_path():
    mapping, pg = cached_page(PhysicalMemory(1 << 20, 1 << 20))
    with running(Task("memory_offline")) as task:
        move_buffers_like_the_seed(mapping, pg)
        exchange_like_the_seed(mapping, pg)
    assert len(task.violations) == 1, "the same bug at the same place is reported once"
    v = task.violations[0]
    assert v.kind == "sleep_in_atomic" and v.operation == "lock_buffer"
    assert v.message.startswith("BUG: sleeping function called from invalid context")
    assert "f:private_lock held" in v.message and "move_buffers_like_the_seed" in v.message
    assert v.call_path[:2] == ("lock_buffer", "move_buffers_like_the_seed")
    assert "Call Trace:" in v.details and "(private_lock){f:private_lock}" in v.details


def test_lockdep_reports_the_inversion_with_both_chains_without_a_deadlock():
    mapping, pg = cached_page(PhysicalMemory(1 << 20, 1 << 20))
    with checking() as graph, running(Task("memory_offline")) as task:
        move_buffers_like_the_seed(mapping, pg)
        exchange_like_the_seed(mapping, pg)
    kinds = [v.kind for v in task.violations]
    assert kinds == ["sleep_in_atomic", "lock_order"]
    order = task.violations[1]
    assert order.message.startswith("WARNING: possible circular locking dependency detected")
    assert "takes private_lock at exchange_like_the_seed" in order.message
    assert "while holding private_lock at lock_buffer ← move_buffers_like_the_seed" in (
        order.message
    )
    for text in ("which lock already depends on the new lock", "CPU0", "*** DEADLOCK ***"):
        assert text in order.details
    # with the checker on, the atomic-sleep report also says where the spinlock was taken
    assert "at: move_buffers_like_the_seed" in task.violations[0].details
    assert ("private_lock", "buffer_lock") in graph.edges
    assert ("buffer_lock", "private_lock") in graph.edges
    assert task.held_locks == [] and not task.held_spinlocks


def test_one_consistent_order_and_trylocks_report_nothing():
    memory = PhysicalMemory(1 << 20, 1 << 20)
    mapping, pg = cached_page(memory)
    other_mapping, other = cached_page(memory, "g")
    with checking() as graph, running(Task()) as task:
        for m, p in ((mapping, pg), (other_mapping, other)):
            lock_page(p)
            for bh in page_buffers(p):
                lock_buffer(bh)
            with m.private_lock:  # buffer_lock -> private_lock, like the _norefs check
                pass
            for bh in page_buffers(p):
                unlock_buffer(bh)
            unlock_page(p)
        # a trylock in the other order cannot deadlock: no edge, no report
        with mapping.private_lock:
            assert trylock_buffer(page_buffers(pg)[0])
        unlock_buffer(page_buffers(pg)[0])
    assert task.violations == []
    assert graph.edges == [
        ("buffer_lock", "private_lock"),
        ("page_lock", "buffer_lock"),
        ("page_lock", "private_lock"),
    ]


def test_strict_mode_stops_at_the_first_violation():
    mapping, pg = cached_page(PhysicalMemory(1 << 20, 1 << 20))
    with checking(strict=True), running(Task()), pytest.raises(LockdepStop) as stop:
        move_buffers_like_the_seed(mapping, pg)
    assert stop.value.violation.kind == "sleep_in_atomic"
    assert not isinstance(stop.value, Exception), "no `except Exception` may swallow it"


def test_mutex_is_a_sleeping_lock_and_a_lock_class():
    spin = SpinLock("j:j_list_lock")
    mutex = Mutex("j:j_checkpoint_mutex")
    with checking() as graph, running(Task()) as task:
        with mutex, spin:
            pass
        with spin:
            mutex.lock()
        mutex.unlock()
    assert [v.kind for v in task.violations] == ["sleep_in_atomic", "lock_order"]
    assert task.violations[0].operation == "mutex_lock"
    assert graph.edges == [
        ("j_checkpoint_mutex", "j_list_lock"),
        ("j_list_lock", "j_checkpoint_mutex"),
    ]


def test_a_lock_released_by_another_task_is_no_longer_held_by_its_taker():
    _, pg = cached_page(PhysicalMemory(1 << 20, 1 << 20))
    bh = page_buffers(pg)[0]
    submitter, completion = Task("flush"), Task("irq")
    with checking():
        with running(submitter):
            lock_buffer(bh)  # submit_bh: the buffer stays locked while the I/O is in flight
        assert [h.lock_class for h in submitter.held_locks] == ["buffer_lock"]
        with running(completion):
            unlock_buffer(bh)  # end_buffer_async_write
    assert submitter.held_locks == [] and completion.held_locks == []


def test_the_fast_path_is_restored_and_costs_one_test():
    with checking():
        assert locks.tracker() is buffer_head._tracker is page._tracker is not None
    assert locks.tracker() is None and buffer_head._tracker is None and page._tracker is None
    assert lockdep.InstrumentedLocks is type(lockdep.InstrumentedLocks())
