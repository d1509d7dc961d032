"""A uniprocessor with preemption points: the explorer's scheduler.

Every actor (the migration, a flusher, a writer …) is ordinary Python running in its own
thread, but exactly one runs at a time: the others wait on their gate. Control changes hands
only at preemption points — inside every lock primitive (through
:class:`hotremove.locking.lockdep.InstrumentedLocks`), at ``might_sleep()`` and I/O, and at explicit
``preempt()`` calls — where a :class:`Chooser` picks who runs next among the runnable actors.
An actor that needs a held lock (or waits for writeback) sleeps until what it waits for is
released; when nobody can run, that is a deadlock and is reported with who waits for what.

With the same chooser (a seeded RNG, or a list of choices a property-based test shrinks) the
interleaving is the same, bit for bit: nothing else decides who runs.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hotremove.model.locks import LockViolation, Task, describe, swap_current

READY, BLOCKED, DONE = "ready", "blocked", "done"


class ScheduleStop(BaseException):
    """Unwinds an actor when the schedule stops (a violation, a deadlock, the step limit).
    A ``BaseException``: no ``except Exception`` in simulated kernel code may swallow it."""


class Chooser:
    """Picks the index of the next actor among ``n`` runnable ones (the current one first)."""

    def choose(self, n: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class RandomChooser(Chooser):
    """Seeded: the same seed gives the same schedule."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, n: int) -> int:
        return self.rng.randrange(n) if n > 1 else 0


class ListChooser(Chooser):
    """Choices from a list (e.g. drawn by hypothesis); when it runs out, keep running the
    current actor. Shrinking the list shrinks the interleaving towards "no preemption"."""

    def __init__(self, choices: list[int]) -> None:
        self.choices = list(choices)
        self.pos = 0

    def choose(self, n: int) -> int:
        if n <= 1 or self.pos >= len(self.choices):
            return 0
        value = self.choices[self.pos]
        self.pos += 1
        return value % n


@dataclass
class Finding:
    """Why a schedule failed: an invariant, a lock violation, a deadlock, a crash."""

    kind: str
    message: str
    actor: str = ""
    details: str = ""
    step: int = 0

    def __str__(self) -> str:
        who = f" [{self.actor}]" if self.actor else ""
        return f"{self.kind}{who}: {self.message}"


@dataclass(frozen=True)
class TraceEvent:
    step: int
    actor: str
    op: str
    what: str

    def __str__(self) -> str:
        return f"{self.step:>5}  {self.actor:<16} {self.op:<22} {self.what}"


@dataclass(eq=False)
class Actor:
    name: str
    body: Callable[[], None]
    task: Task
    gate: threading.Lock = field(default_factory=threading.Lock)
    state: str = READY
    until: Callable[[], bool] | None = None
    waiting: str = ""
    stack: list[Task] = field(default_factory=list)
    thread: threading.Thread | None = None


class Scheduler:
    """Runs actors one at a time, switching only at preemption points (see module doc)."""

    def __init__(
        self,
        chooser: Chooser,
        *,
        max_steps: int = 20_000,
        check: Callable[[], list[Finding]] | None = None,
        covers: Callable[[object], bool] | None = None,
    ) -> None:
        self.chooser = chooser
        #: which objects' preemption points interleave (a focused schedule's window, see
        #: :mod:`hotremove.explore.focus`); None: all of them
        self.covers = covers
        self.max_steps = max_steps
        self.check = check
        self.actors: list[Actor] = []
        self.current: Actor | None = None
        self.steps = 0
        self.switches = 0
        self.trace: list[TraceEvent] = []
        self.findings: list[Finding] = []
        self.stopping = False
        self._main = threading.Lock()
        self._digest = hashlib.blake2b(digest_size=8)

    # -- setup and driving (main thread) ----------------------------------------------------
    def add(self, name: str, body: Callable[[], None], task: Task) -> Actor:
        actor = Actor(name, body, task)
        actor.gate.acquire()
        actor.stack = [task]
        self.actors.append(actor)
        return actor

    def run(self) -> None:
        """Run every actor to completion (or until the schedule stops)."""
        saved = swap_current([])
        self._main.acquire()
        for actor in self.actors:
            actor.thread = threading.Thread(
                target=self._actor_main, args=(actor,), name=f"explore-{actor.name}", daemon=True
            )
            actor.thread.start()
        try:
            first = self._pick()
            if first is not None:
                self._enter(first)
                self._main.acquire()  # until every actor is done or the schedule stops
            if self.stopping:  # unwind the actors that are still parked, one at a time
                for actor in self.actors:
                    if actor.state != DONE:
                        self.current = actor
                        swap_current(actor.stack)
                        actor.gate.release()
                        self._main.acquire()
        finally:
            for actor in self.actors:
                if actor.thread is not None:
                    actor.thread.join()
            swap_current(saved)

    @property
    def digest(self) -> str:
        """A fingerprint of the whole interleaving (equal schedules, equal digests)."""
        return self._digest.hexdigest()

    # -- called from actor threads ----------------------------------------------------------
    def _actor_main(self, actor: Actor) -> None:
        actor.gate.acquire()  # wait to be scheduled
        try:
            if not self.stopping:
                self._record(actor, "start", "")
                actor.body()
        except ScheduleStop:
            pass
        except BaseException as exc:  # a crash in simulated code is a finding, not a hang
            if not self.stopping:
                kind = getattr(exc, "kind", "crash")
                message = str(exc) if kind != "crash" else f"{type(exc).__name__}: {exc}"
                self._note(Finding(kind, message, actor.name))
        finally:
            actor.state = DONE
            self._leave(actor)

    def _leave(self, actor: Actor) -> None:
        """``actor`` finished: hand the CPU to the next one, or back to the driver."""
        if not self.stopping:
            self._record(actor, "exit", "")
            nxt = self._pick()
            if nxt is not None:
                self._enter(nxt)
                return
            blocked = [a for a in self.actors if a.state == BLOCKED]
            if blocked:
                self._note(self._deadlock(blocked))
        self._main.release()

    def _enter(self, actor: Actor) -> None:
        self.current = actor
        swap_current(actor.stack)
        actor.gate.release()

    def _pick(self) -> Actor | None:
        """Choose among runnable actors (the current one first); None when nobody can run."""
        me = self.current
        candidates = [me] if me is not None and me.state == READY else []
        for actor in self.actors:
            if actor is me:
                continue
            if actor.state == READY or (actor.state == BLOCKED and actor.until()):  # type: ignore[misc]
                candidates.append(actor)
        if not candidates:
            return None
        return candidates[self.chooser.choose(len(candidates))]

    def _switch(self, me: Actor, nxt: Actor) -> None:
        """Give the CPU to ``nxt`` and sleep until someone gives it back to ``me``."""
        if self.check is not None:
            found = self.check()
            if found:
                for finding in found:
                    finding.step = self.steps
                    finding.actor = finding.actor or me.name
                self.findings.extend(found)
                self.stopping = True
                raise ScheduleStop
        self.switches += 1
        me.stack = swap_current(nxt.stack)
        self.current = nxt
        nxt.gate.release()
        me.gate.acquire()
        if self.stopping:
            raise ScheduleStop

    def _record(self, actor: Actor, op: str, what: str) -> None:
        self.steps += 1
        event = TraceEvent(self.steps, actor.name, op, what)
        self.trace.append(event)
        self._digest.update(f"{event.actor}|{event.op}|{event.what}\n".encode())

    def point(self, label: str, obj: object = None) -> None:
        """A preemption point (see :class:`hotremove.locking.lockdep.Scheduler`)."""
        if self.stopping or (self.covers is not None and not self.covers(obj)):
            return
        me = self.current
        assert me is not None
        self._record(me, label, describe(obj))
        if self.steps > self.max_steps:
            self._fail(Finding("livelock", f"no end after {self.max_steps} steps", me.name))
        nxt = self._pick()
        if nxt is not None and nxt is not me:
            self._switch(me, nxt)

    def block(self, released: Callable[[], bool], what: str, obj: object) -> None:
        """Sleep until ``released()``: other actors run meanwhile; nobody left = deadlock."""
        if self.stopping:
            raise ScheduleStop
        me = self.current
        assert me is not None
        if released():
            return
        self._record(me, f"sleep:{what}", describe(obj))
        me.state, me.until, me.waiting = BLOCKED, released, f"{what}({describe(obj)})"
        nxt = self._pick()
        if nxt is None:
            self._fail(self._deadlock([a for a in self.actors if a.state == BLOCKED]))
        assert nxt is not None
        if nxt is not me:
            self._switch(me, nxt)
        me.state, me.until, me.waiting = READY, None, ""
        self._record(me, f"woken:{what}", describe(obj))

    def stop(self, violation: LockViolation) -> None:
        """A lock violation: the schedule fails here."""
        me = self.current
        self._fail(
            Finding(
                violation.kind,
                violation.message,
                me.name if me else violation.task,
                violation.details,
            )
        )

    def fail(self, finding: Finding) -> None:
        """An invariant broke: the schedule fails here (raises in the running actor)."""
        self._fail(finding)

    def _note(self, finding: Finding) -> None:
        finding.step = self.steps
        self.findings.append(finding)
        self.stopping = True

    def _fail(self, finding: Finding) -> None:
        self._note(finding)
        raise ScheduleStop

    def _deadlock(self, blocked: list[Actor]) -> Finding:
        waits = "; ".join(f"{a.name} sleeps in {a.waiting}" for a in blocked)
        return Finding("deadlock", f"no task can run: {waits}", blocked[0].name)


def actor_main(body: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """Wrap an actor's body so that call paths start at it (see locks.call_path)."""

    def actor_main() -> None:
        body(*args)

    return actor_main
