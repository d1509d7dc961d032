"""Locks and execution context: spinlocks make the context atomic, sleeping locks may sleep.

The simulator runs one task at a time. :class:`Task` plays ``current``: it knows which spinlocks
it holds (so ``might_sleep()`` can say "sleeping function called from invalid context", as the
kernel's CONFIG_DEBUG_ATOMIC_SLEEP does — always on, it costs one list test) and how to wait
for a sleeping lock another party holds (``waiter``: e.g. completing the I/O that holds a
buffer locked).

Everything else is opt-in and costs one module-level ``is None`` test per lock operation when
off: :func:`set_tracker` installs an object that takes over every lock primitive here and in
:mod:`~hotremove.model.buffer_head` / :mod:`~hotremove.model.page` —
:mod:`hotremove.locking.lockdep`
(lock-order checking, strict mode) and the interleaving explorer (:mod:`hotremove.explore`,
which preempts at every lock operation and makes a task that waits for a held lock sleep).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, Self


class DeadlockError(RuntimeError):
    """A task waited for a lock nobody will release (reported, never silently ignored)."""


@dataclass(frozen=True)
class LockViolation:
    """One lock-discipline bug, worded like the kernel's report.

    ``kind``: ``sleep_in_atomic`` (a sleeping operation with a spinlock held) or
    ``lock_order`` (lockdep: two lock classes taken in both orders). ``message`` is one line;
    ``details`` the kernel-style multi-line report (locks held, where, call trace).
    """

    kind: str
    message: str
    held: tuple[str, ...]
    operation: str
    task: str = ""
    #: the simulated call path, innermost first (``lock_buffer``, ``remap_move_buffer_ext2``…)
    call_path: tuple[str, ...] = ()
    details: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "held": list(self.held),
            "operation": self.operation,
            "task": self.task,
            "call_path": list(self.call_path),
            "details": self.details,
        }


#: Modules whose frames are machinery, not part of a simulated call path.
_MACHINERY = (
    "hotremove.model.locks",
    "hotremove.locking.lockdep",
    "hotremove.explore.scheduler",
    "hotremove.testing",  # the conformance kit's recording wrappers
    "threading",
    "contextlib",
)


def call_path(skip: int = 1, limit: int = 12) -> tuple[str, ...]:
    """The simulated kernel call path of the caller, innermost first: function names of the
    simulator's, the plugins' and the strategies' frames (the lock machinery left out)."""
    frame: Any = sys._getframe(skip)
    out: list[str] = []
    while frame is not None and len(out) < limit:
        module = frame.f_globals.get("__name__", "")
        name = frame.f_code.co_name
        if not module.startswith(_MACHINERY) and not name.startswith("<"):
            out.append(name)
            if name in _ROOTS:
                break
        frame = frame.f_back
    return tuple(out)


#: Where a call path starts: the engine's entry, an explorer actor's body.
_ROOTS = {"offline_pages", "actor_main", "sync"}


@dataclass(eq=False)
class Task:
    """``current``: a simulated task (the migration, or an explorer actor)."""

    name: str = "memory_offline"
    held_spinlocks: list[SpinLock] = field(default_factory=list)
    violations: list[LockViolation] = field(default_factory=list)
    #: Called with the object a sleeping lock waits for; returns True once it is released.
    waiter: Callable[[object], bool] | None = None
    #: Every lock this task holds, with where it took it (kept only while a tracker runs).
    held_locks: list[Any] = field(default_factory=list)

    @property
    def in_atomic(self) -> bool:
        return bool(self.held_spinlocks)

    def might_sleep(self, operation: str, target: object = None) -> None:
        """Record a violation when a sleeping operation runs with a spinlock held."""
        if _tracker is not None:
            _tracker.might_sleep(self, operation, target)
            return
        if self.held_spinlocks:
            if target is None:  # a report (rare): name the lock the calling primitive takes
                caller = sys._getframe(1)
                if caller.f_code.co_name == operation:
                    target = next(
                        (
                            caller.f_locals[n]
                            for n in ("bh", "page", "self")
                            if n in caller.f_locals
                        ),
                        None,
                    )
            self.record(sleep_in_atomic(self, operation, target, call_path(2)))

    def record(self, violation: LockViolation) -> bool:
        """Keep ``violation`` unless the same bug (kind, operation, call path) is already
        recorded — the kernel rate-limits repeats too. True if it was new."""
        key = (violation.kind, violation.operation, violation.call_path)
        for seen in self.violations:
            if (seen.kind, seen.operation, seen.call_path) == key:
                return False
        self.violations.append(violation)
        return True

    def wait_for(self, obj: object, what: str) -> None:
        """Sleep until ``obj`` is released by its holder, or report a deadlock."""
        if _tracker is not None:
            _tracker.wait_for(self, obj, what)
            return
        if self.waiter is None or not self.waiter(obj):
            raise DeadlockError(f"{self.name}: {what} waits forever for {obj!r}")


def describe(obj: object) -> str:
    """A short name for a lock or what it protects: ``blk 1042 (pfn 0x21)``, ``pfn 0x21``."""
    if obj is None:
        return ""
    blocknr = getattr(obj, "b_blocknr", None)
    if blocknr is not None:
        page = getattr(obj, "b_page", None)
        pfn = getattr(page, "pfn", None)
        return f"blk {blocknr}" + (f" (pfn {pfn:#x})" if pfn is not None else "")
    pfn = getattr(obj, "pfn", None)
    if pfn is not None:
        return f"pfn {pfn:#x}"
    return str(getattr(obj, "name", obj))


def sleep_in_atomic(
    task: Task,
    operation: str,
    target: object,
    path: tuple[str, ...],
    held_sites: dict[object, tuple[str, ...]] | None = None,
) -> LockViolation:
    """The kernel's ``__might_sleep`` report: the sleeping call, the spinlocks held (and
    where each was taken, when known), the call trace."""
    held = tuple(lock.name for lock in task.held_spinlocks)
    what = f"{operation}({describe(target)})" if target is not None else f"{operation}()"
    caller = next((name for name in path if name != operation), "?")
    message = (
        f"BUG: sleeping function called from invalid context: {what} with {', '.join(held)} "
        f"held (in_atomic(): 1, task {task.name}) at {caller}"
    )
    lines = [
        f"BUG: sleeping function called from invalid context at {operation}()",
        f"in_atomic(): 1, irqs_disabled(): 0, non_block: 0, name: {task.name}",
        f"preempt_count: {len(held)}, expected: 0",
        f"{len(held)} lock{'s' if len(held) != 1 else ''} held by {task.name}:",
    ]
    for i, lock in enumerate(task.held_spinlocks):
        site = (held_sites or {}).get(lock)
        at = f", at: {' ← '.join(site[:4])}" if site else ""
        lines.append(f" #{i}: ({lock.lock_class}){{{lock.name}}}{at}")
    lines.append("Call Trace:")
    lines.extend(f"  {name}" for name in path)
    return LockViolation(
        kind="sleep_in_atomic",
        message=message,
        held=held,
        operation=operation,
        task=task.name,
        call_path=path,
        details="\n".join(lines),
    )


_current: list[Task] = [Task()]


def current() -> Task:
    """The running task (the kernel's ``current``)."""
    return _current[-1]


@contextlib.contextmanager
def running(task: Task) -> Iterator[Task]:
    """Make ``task`` current for the duration of a block (nested runs restore the outer one)."""
    _current.append(task)
    try:
        yield task
    finally:
        _current.pop()


def swap_current(stack: list[Task]) -> list[Task]:
    """Install another task stack as ``current``'s and return the old one (the explorer's
    context switch: each actor has its own stack, only one runs at a time)."""
    old = _current[:]
    _current[:] = stack
    return old


class _Lock:
    """What spinlocks and mutexes share: a name, a lockdep class, the holder, ``with``."""

    __slots__ = ("held", "lock_class", "name", "owner")

    def __init__(self, name: str, lock_class: str | None = None) -> None:
        self.name = name
        self.lock_class = lock_class or name.rsplit(":", 1)[-1]
        self.held = False
        self.owner: Task | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{' held' if self.held else ''}>"

    def lock(self) -> None:
        raise NotImplementedError

    def unlock(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


class SpinLock(_Lock):
    """A spinlock such as ``mapping->private_lock``: holding it makes the context atomic.

    ``lock_class`` is lockdep's class (every mapping's ``private_lock`` is one class); by
    default the part of the name after the last ``:``.
    """

    __slots__ = ()

    def lock(self) -> None:
        if _tracker is not None:
            _tracker.spin_lock(self)
            return
        if self.held:
            raise DeadlockError(f"spin_lock({self.name}): already held (recursive spinlock)")
        task = _current[-1]
        self.held = True
        self.owner = task
        task.held_spinlocks.append(self)

    def unlock(self) -> None:
        if _tracker is not None:
            _tracker.spin_unlock(self)
            return
        if not self.held:
            raise AssertionError(f"spin_unlock({self.name}) of an unlocked lock")
        owner = self.owner or _current[-1]
        self.held = False
        self.owner = None
        owner.held_spinlocks.remove(self)


class Mutex(_Lock):
    """A sleeping lock (``struct mutex``), such as jbd2's ``j_checkpoint_mutex``."""

    __slots__ = ()

    def lock(self) -> None:
        if _tracker is not None:
            _tracker.mutex_lock(self)
            return
        task = _current[-1]
        task.might_sleep("mutex_lock")
        if self.held:
            task.wait_for(self, "mutex_lock")
        self.held = True
        self.owner = task

    def unlock(self) -> None:
        if _tracker is not None:
            _tracker.mutex_unlock(self)
            return
        if not self.held:
            raise AssertionError(f"mutex_unlock({self.name}) of an unlocked mutex")
        self.held = False
        self.owner = None


def preempt(label: str, obj: object = None) -> None:
    """An explicit preemption point (``cond_resched()``, I/O in flight): the explorer may
    switch to another task here. Free when no tracker runs."""
    if _tracker is not None:
        _tracker.preempt(label, obj)


class LockTracker(Protocol):
    """What :func:`set_tracker` installs: every lock primitive's slow path."""

    def lock_buffer(self, bh: Any) -> None: ...
    def trylock_buffer(self, bh: Any) -> bool: ...
    def unlock_buffer(self, bh: Any) -> None: ...
    def lock_page(self, page: Any) -> None: ...
    def trylock_page(self, page: Any) -> bool: ...
    def unlock_page(self, page: Any) -> None: ...
    def spin_lock(self, lock: SpinLock) -> None: ...
    def spin_unlock(self, lock: SpinLock) -> None: ...
    def mutex_lock(self, lock: Mutex) -> None: ...
    def mutex_unlock(self, lock: Mutex) -> None: ...
    def might_sleep(self, task: Task, operation: str, target: object) -> None: ...
    def wait_for(self, task: Task, obj: object, what: str) -> None: ...
    def preempt(self, label: str, obj: object) -> None: ...


_tracker: LockTracker | None = None
#: Modules whose lock primitives keep their own copy of the tracker in a ``_tracker`` global
#: (page, buffer_head): they register here, so this module imports neither.
_tracker_users: list[Any] = []


def tracker() -> LockTracker | None:
    """The installed tracker, if any."""
    return _tracker


def register_tracker_user(module_name: str) -> None:
    """Let the module named ``module_name`` keep a fast-path copy of the tracker."""
    module = sys.modules[module_name]
    module._tracker = _tracker
    _tracker_users.append(module)


def set_tracker(new: LockTracker | None) -> LockTracker | None:
    """Install ``new`` as the slow path of every lock primitive (``None``: back to the fast
    path); returns the previous one. The flag is a module global in each primitive's module,
    so the fast path pays one ``is None`` test."""
    global _tracker
    old = _tracker
    _tracker = new
    for module in _tracker_users:
        module._tracker = new
    return old
