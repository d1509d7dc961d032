"""Locks and execution context: spinlocks make the context atomic, sleeping locks may sleep.

The simulator runs one task at a time. :class:`Task` plays ``current``: it knows which spinlocks
it holds (so ``might_sleep()`` can say "sleeping function called from invalid context", as the
kernel's CONFIG_DEBUG_ATOMIC_SLEEP does) and how to wait for a sleeping lock another party
holds (``waiter``: e.g. completing the I/O that holds a buffer locked). The full checker
(lock order, strict mode) builds on these records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


class DeadlockError(RuntimeError):
    """A task waited for a lock nobody will release (reported, never silently ignored)."""


@dataclass(frozen=True)
class LockViolation:
    """One lock-discipline bug, worded like the kernel's report."""

    kind: str  # "sleep_in_atomic"
    message: str
    held: tuple[str, ...]
    operation: str

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "held": list(self.held),
            "operation": self.operation,
        }


@dataclass
class Task:
    """``current``: the simulated task that runs the migration."""

    name: str = "memory_offline"
    held_spinlocks: list[SpinLock] = field(default_factory=list)
    violations: list[LockViolation] = field(default_factory=list)
    #: Called with the object a sleeping lock waits for; returns True once it is released.
    waiter: Callable[[object], bool] | None = None

    @property
    def in_atomic(self) -> bool:
        return bool(self.held_spinlocks)

    def might_sleep(self, operation: str) -> None:
        """Record a violation when a sleeping operation runs with a spinlock held."""
        if not self.held_spinlocks:
            return
        held = tuple(lock.name for lock in self.held_spinlocks)
        self.violations.append(
            LockViolation(
                kind="sleep_in_atomic",
                message=(
                    f"BUG: sleeping function called from invalid context: {operation}() "
                    f"with {', '.join(held)} held (in_atomic(): 1, task {self.name})"
                ),
                held=held,
                operation=operation,
            )
        )

    def wait_for(self, obj: object, what: str) -> None:
        """Sleep until ``obj`` is released by its holder, or report a deadlock."""
        if self.waiter is None or not self.waiter(obj):
            raise DeadlockError(f"{self.name}: {what} waits forever for {obj!r}")


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


class SpinLock:
    """A spinlock such as ``mapping->private_lock``: holding it makes the context atomic."""

    __slots__ = ("held", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.held = False

    def __repr__(self) -> str:
        return f"<SpinLock {self.name}{' held' if self.held else ''}>"

    def lock(self) -> None:
        if self.held:
            raise DeadlockError(f"spin_lock({self.name}): already held (recursive spinlock)")
        self.held = True
        current().held_spinlocks.append(self)

    def unlock(self) -> None:
        if not self.held:
            raise AssertionError(f"spin_unlock({self.name}) of an unlocked lock")
        self.held = False
        current().held_spinlocks.remove(self)

    def __enter__(self) -> SpinLock:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()
