"""Lockdep's graph: which lock classes were taken while holding which, who holds what, and
the reports of a circular dependency or of sleeping with a spinlock held. Fed by
:mod:`hotremove.locking.lockdep` from every lock primitive's slow path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hotremove.model.locks import (
    LockViolation,
    Task,
    call_path,
    describe,
)

#: Depth of the call path kept for each lock acquisition (deeper only in reports).
SITE_DEPTH = 6


class LockdepStop(BaseException):
    """Strict mode: the first lock violation stops the run. A ``BaseException`` so that no
    ``except Exception`` on the way (the engine's guard around plugin strategies) swallows it."""

    def __init__(self, violation: LockViolation) -> None:
        super().__init__(violation.message)
        self.violation = violation


@dataclass(frozen=True)
class Held:
    """One lock a task holds (lockdep's ``held_lock``)."""

    lock_class: str
    key: object
    name: str
    site: tuple[str, ...]
    obj: Any


@dataclass(frozen=True)
class Dependency:
    """The first time ``after`` was taken while ``before`` was held."""

    before: str
    after: str
    task: str
    before_site: tuple[str, ...]
    after_site: tuple[str, ...]


def _at(site: tuple[str, ...], depth: int = 4) -> str:
    return " ← ".join(site[:depth]) or "?"


class Lockdep:
    """The dependency graph between lock classes and who holds what."""

    def __init__(self) -> None:
        self.after: dict[str, dict[str, Dependency]] = {}
        self.owner: dict[int, Task] = {}
        self.reported: set[frozenset[str]] = set()
        self.violations: list[LockViolation] = []

    @property
    def edges(self) -> list[tuple[str, str]]:
        return sorted((a, b) for a, deps in self.after.items() for b in deps)

    def will_take(self, task: Task, lock_class: str, obj: object) -> LockViolation | None:
        """Record ``held → lock_class`` for every class ``task`` holds; return the report if
        one of these edges closes a cycle for the first time."""
        found: LockViolation | None = None
        site: tuple[str, ...] | None = None
        for held in task.held_locks:
            if held.lock_class == lock_class:
                continue  # nesting within a class (the buffers of one page)
            deps = self.after.setdefault(held.lock_class, {})
            if lock_class in deps:
                continue
            if site is None:
                site = call_path(3, SITE_DEPTH)
            chain = self._chain(lock_class, held.lock_class)
            deps[lock_class] = Dependency(held.lock_class, lock_class, task.name, held.site, site)
            pair = frozenset((lock_class, held.lock_class))
            if chain and pair not in self.reported and found is None:
                self.reported.add(pair)
                found = self._inversion(task, lock_class, obj, site, held, chain)
                self.violations.append(found)
        return found

    def _chain(self, start: str, goal: str) -> list[Dependency]:
        """Dependencies leading from ``start`` to ``goal`` (breadth first), or []."""
        seen = {start}
        queue: list[tuple[str, list[Dependency]]] = [(start, [])]
        while queue:
            node, path = queue.pop(0)
            for nxt, dep in sorted(self.after.get(node, {}).items()):
                if nxt == goal:
                    return [*path, dep]
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, [*path, dep]))
        return []

    def _inversion(
        self,
        task: Task,
        lock_class: str,
        obj: object,
        site: tuple[str, ...],
        held: Held,
        chain: list[Dependency],
    ) -> LockViolation:
        first = chain[0]
        message = (
            f"WARNING: possible circular locking dependency detected: {task.name} takes "
            f"{lock_class} at {_at(site, 2)} while holding {held.lock_class}, but "
            f"{first.after} was taken while holding {lock_class} at {_at(first.after_site, 2)}"
        )
        lines = [
            "======================================================",
            "WARNING: possible circular locking dependency detected",
            "------------------------------------------------------",
            f"{task.name} is trying to acquire lock:",
            f"  ({lock_class}){{{describe(obj)}}}, at: {_at(site)}",
            "",
            "but task is already holding lock:",
            f"  ({held.lock_class}){{{held.name}}}, at: {_at(held.site)}",
            "",
            "which lock already depends on the new lock.",
            "",
            "the existing dependency chain (in reverse order) is:",
        ]
        for i, dep in reversed(list(enumerate(chain, start=1))):
            lines.append(f"-> #{i} ({dep.after}):")
            lines.append(f"       {_at(dep.after_site, SITE_DEPTH)}  [{dep.task}]")
            lines.append(f"       while holding ({dep.before}) from {_at(dep.before_site)}")
        lines.append(f"-> #0 ({lock_class}):")
        lines.append(f"       {_at(site, SITE_DEPTH)}  [{task.name}]")
        lines += [
            "",
            "other info that might help us debug this:",
            " Possible unsafe locking scenario:",
            "",
            f"       {'CPU0':<24}{'CPU1'}",
            f"       {'----':<24}{'----'}",
            f"  lock({held.lock_class});",
            f"  {'':<29}lock({lock_class});",
            f"  {'':<29}lock({held.lock_class});",
            f"  lock({lock_class});",
            "",
            " *** DEADLOCK ***",
        ]
        return LockViolation(
            kind="lock_order",
            message=message,
            held=(held.lock_class,),
            operation=lock_class,
            task=task.name,
            call_path=site,
            details="\n".join(lines),
        )

    def acquired(self, task: Task, lock_class: str, obj: object) -> None:
        task.held_locks.append(Held(lock_class, obj, describe(obj), call_path(3, SITE_DEPTH), obj))
        self.owner[obj] = task

    def released(self, obj: object) -> None:
        """Forget ``obj``'s holder (who may be another task: I/O completion unlocks a buffer
        the submitter locked). A lock taken before checking began is ignored."""
        task = self.owner.pop(obj, None)
        if task is None:
            return
        held = task.held_locks
        for i in range(len(held) - 1, -1, -1):
            if held[i].key == obj:
                del held[i]
                return
