"""Lock checking in the spirit of the kernel's lockdep and CONFIG_DEBUG_ATOMIC_SLEEP.

Two checks over every lock the simulated kernel takes (page lock, buffer lock, ``private_lock``,
jbd2's locks …), grouped into lock *classes* — every mapping's ``private_lock`` is one class:

* **sleeping in atomic context**: ``lock_buffer``/``lock_page``/``mutex_lock``, waiting for
  writeback or synchronous I/O with a spinlock held. Reported with the spinlocks held, where
  each was taken, and the simulated call trace (the kernel's "BUG: sleeping function called
  from invalid context"). The plain check is always on (:mod:`hotremove.model.locks`); here
  the report also says where the spinlock was taken.
* **lock order**: each time a task takes class B while holding class A, the edge A → B is
  recorded with where both were taken. The first time an edge closes a cycle (B →…→ A was
  seen before), "possible circular locking dependency detected" is reported with both chains
  and the CPU0/CPU1 scenario — even if no deadlock happened in this run. Trylocks add no
  edge *to* the lock they take (they cannot deadlock), as in lockdep.

The graph and its reports are :mod:`hotremove.locking.lockgraph`'s (:class:`Lockdep`); this module
feeds it. :func:`checking` turns both checks on for a block of code; with ``strict=True`` the
first violation raises :class:`LockdepStop` and so stops the run. :class:`InstrumentedLocks` is
the slow path of every lock primitive; the interleaving explorer installs it with a scheduler
that preempts at every lock operation and puts a task that waits for a held lock to sleep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from hotremove.locking.lockgraph import Dependency, Held, Lockdep, LockdepStop
from hotremove.model.buffer_head import BH_Lock, BufferHead
from hotremove.model.locks import (
    DeadlockError,
    LockViolation,
    Mutex,
    SpinLock,
    Task,
    call_path,
    current,
    describe,
    set_tracker,
    sleep_in_atomic,
)
from hotremove.model.locks import (
    tracker as get_tracker,
)
from hotremove.model.page import Page, PG_locked, PG_writeback

if TYPE_CHECKING:
    import numpy as np


class Scheduler(Protocol):
    """What the interleaving explorer plugs into :class:`InstrumentedLocks`."""

    def point(self, label: str, obj: object) -> None:
        """A preemption point: another task may run now."""

    def block(self, released: Callable[[], bool], what: str, obj: object) -> None:
        """Sleep until ``released()``; raises if nobody ever can release it (deadlock)."""

    def stop(self, violation: LockViolation) -> None:
        """A violation: stop the schedule (raises)."""


#: What a task sleeping in ``Task.wait_for(obj, what)`` waits to become true.
RELEASED: dict[str, Callable[[Any], Callable[[], bool]]] = {
    "folio_wait_writeback": lambda page: lambda: not page.flags & PG_writeback,
    "lock_page": lambda page: lambda: not page.flags & PG_locked,
    "lock_buffer": lambda bh: lambda: not bh.b_state & BH_Lock,
    "mutex_lock": lambda lock: lambda: not lock.held,
}


class InstrumentedLocks:
    """The slow path of every lock primitive (see :func:`hotremove.model.locks.set_tracker`):
    preemption points for a scheduler, lock-order and atomic-sleep checks for lockdep."""

    def __init__(
        self,
        lockdep: Lockdep | None = None,
        *,
        scheduler: Scheduler | None = None,
        strict: bool = False,
    ) -> None:
        self.lockdep = lockdep
        self.scheduler = scheduler
        self.strict = strict
        #: the pfns other tasks may touch while the engine migrates (a focused explorer's
        #: window): every other page may take the batched path, which takes no lock. None:
        #: every page goes page by page, through these primitives
        self.focus_pfns: np.ndarray | None = None
        self._target: object = None  # what the lock primitive calling might_sleep() locks

    # -- reporting --------------------------------------------------------------------------
    def violation(self, task: Task, violation: LockViolation) -> None:
        task.record(violation)
        if self.scheduler is not None:
            self.scheduler.stop(violation)
        elif self.strict:
            raise LockdepStop(violation)

    def _will_take(self, task: Task, lock_class: str, obj: object) -> None:
        if self.lockdep is not None:
            found = self.lockdep.will_take(task, lock_class, obj)
            if found is not None:
                self.violation(task, found)

    def _acquired(self, task: Task, lock_class: str, obj: object) -> None:
        if self.lockdep is not None:
            self.lockdep.acquired(task, lock_class, obj)

    def _released(self, obj: object) -> None:
        if self.lockdep is not None:
            self.lockdep.released(obj)

    # -- sleeping and preemption --------------------------------------------------------------
    def preempt(self, label: str, obj: object = None) -> None:
        if self.scheduler is not None:
            self.scheduler.point(label, obj)

    def might_sleep(self, task: Task, operation: str, target: object) -> None:
        target = target if target is not None else self._target
        self.preempt(operation, target)
        if task.held_spinlocks:
            sites = {h.key: h.site for h in task.held_locks}
            self.violation(task, sleep_in_atomic(task, operation, target, call_path(3), sites))

    def _sleep_for(self, task: Task, operation: str, target: object) -> None:
        """``might_sleep()`` through the task (so wrappers that record sleeping calls see
        it), naming the lock for the report."""
        self._target = target
        try:
            task.might_sleep(operation)
        finally:
            self._target = None

    def wait_for(self, task: Task, obj: object, what: str) -> None:
        make = RELEASED.get(what)
        self._wait(task, obj, what, make(obj) if make else None)

    def _wait(
        self, task: Task, obj: object, what: str, released: Callable[[], bool] | None
    ) -> None:
        """Sleep on ``obj``: its registered holder (I/O in flight, another task modelled by
        the machine) finishes, or the scheduler runs others until it is released."""
        if task.waiter is not None and task.waiter(obj):
            return
        if self.scheduler is not None and released is not None:
            self.scheduler.block(released, what, obj)
            return
        raise DeadlockError(f"{task.name}: {what} waits forever for {describe(obj)}")

    # -- buffer and page locks (bit locks) ----------------------------------------------------
    def lock_buffer(self, bh: BufferHead) -> None:
        task = current()
        self._sleep_for(task, "lock_buffer", bh)
        self._will_take(task, "buffer_lock", bh)
        while bh.b_state & BH_Lock:
            self._wait(task, bh, "lock_buffer", lambda: not bh.b_state & BH_Lock)
        bh.b_state |= BH_Lock
        self._acquired(task, "buffer_lock", bh)

    def trylock_buffer(self, bh: BufferHead) -> bool:
        self.preempt("trylock_buffer", bh)
        if bh.b_state & BH_Lock:
            return False
        bh.b_state |= BH_Lock
        self._acquired(current(), "buffer_lock", bh)
        return True

    def unlock_buffer(self, bh: BufferHead) -> None:
        if not bh.b_state & BH_Lock:
            raise AssertionError(f"unlock_buffer on an unlocked buffer {bh!r}")
        bh.b_state &= ~BH_Lock
        self._released(bh)
        self.preempt("unlock_buffer", bh)

    def lock_page(self, page: Page) -> None:
        task = current()
        self._sleep_for(task, "lock_page", page)
        self._will_take(task, "page_lock", page)
        while page.flags & PG_locked:
            self._wait(task, page, "lock_page", lambda: not page.flags & PG_locked)
        page.flags |= PG_locked
        self._acquired(task, "page_lock", page)

    def trylock_page(self, page: Page) -> bool:
        self.preempt("trylock_page", page)
        if page.flags & PG_locked:
            return False
        page.flags |= PG_locked
        self._acquired(current(), "page_lock", page)
        return True

    def unlock_page(self, page: Page) -> None:
        if not page.flags & PG_locked:
            raise AssertionError(f"unlock_page on an unlocked page {page!r}")
        page.flags &= ~PG_locked
        self._released(page)
        self.preempt("unlock_page", page)

    # -- spinlocks and mutexes ----------------------------------------------------------------
    def spin_lock(self, lock: SpinLock) -> None:
        task = current()
        self.preempt("spin_lock", lock)
        if lock.held and lock.owner is task:
            raise DeadlockError(f"spin_lock({lock.name}): already held (recursive spinlock)")
        self._will_take(task, lock.lock_class, lock)
        while lock.held:  # another CPU holds it: spin
            if self.scheduler is None:
                raise DeadlockError(f"spin_lock({lock.name}): held by {lock.owner}")
            self.scheduler.block(lambda: not lock.held, "spin_lock", lock)
        lock.held = True
        lock.owner = task
        task.held_spinlocks.append(lock)
        self._acquired(task, lock.lock_class, lock)

    def spin_unlock(self, lock: SpinLock) -> None:
        if not lock.held:
            raise AssertionError(f"spin_unlock({lock.name}) of an unlocked lock")
        owner = lock.owner or current()
        lock.held = False
        lock.owner = None
        if lock in owner.held_spinlocks:
            owner.held_spinlocks.remove(lock)
        self._released(lock)
        self.preempt("spin_unlock", lock)

    def mutex_lock(self, lock: Mutex) -> None:
        task = current()
        self._sleep_for(task, "mutex_lock", lock)
        self._will_take(task, lock.lock_class, lock)
        while lock.held:
            self._wait(task, lock, "mutex_lock", lambda: not lock.held)
        lock.held = True
        lock.owner = task
        self._acquired(task, lock.lock_class, lock)

    def mutex_unlock(self, lock: Mutex) -> None:
        if not lock.held:
            raise AssertionError(f"mutex_unlock({lock.name}) of an unlocked mutex")
        lock.held = False
        lock.owner = None
        self._released(lock)
        self.preempt("mutex_unlock", lock)


def hand_to_io(obj: object) -> None:
    """``submit_bh`` with the buffer locked: from now on the lock belongs to the I/O (its
    completion unlocks it), not to the task that took it."""
    tracker = get_tracker()
    if isinstance(tracker, InstrumentedLocks) and tracker.lockdep is not None:
        tracker.lockdep.released(obj)


@contextlib.contextmanager
def checking(*, strict: bool = False) -> Iterator[Lockdep]:
    """Check lock discipline (order and atomic sleeps) for the duration of the block.

    Violations are appended to the running task's ``violations`` (the run's report reads
    ``machine.task.violations``); ``strict=True`` raises :class:`LockdepStop` at the first
    one instead of carrying on.
    """
    lockdep = Lockdep()
    old = set_tracker(InstrumentedLocks(lockdep, strict=strict))
    try:
        yield lockdep
    finally:
        set_tracker(old)


CHECK_MODES = ("off", "on", "strict")


def checks(mode: str) -> contextlib.AbstractContextManager[Lockdep | None]:
    """What ``--checks off|on|strict`` wraps a run in: ``off`` only the always-on atomic-sleep
    check, ``on`` lockdep too (violations in the report, the run fails), ``strict`` stops at
    the first violation with :class:`LockdepStop` (``.violation.details`` is the report)."""
    if mode not in CHECK_MODES:
        raise ValueError(f"--checks: expected one of {', '.join(CHECK_MODES)}, got {mode!r}")
    if mode == "off":
        return contextlib.nullcontext(None)
    return checking(strict=mode == "strict")


__all__ = [
    "CHECK_MODES",
    "Dependency",
    "Held",
    "InstrumentedLocks",
    "Lockdep",
    "LockdepStop",
    "Scheduler",
    "checking",
    "checks",
    "hand_to_io",
]
