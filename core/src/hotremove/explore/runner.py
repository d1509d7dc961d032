"""Run the migration against actors under many seeded schedules; stop at the first failure.

One :class:`Explorer` builds on one machine: it records the machine once
(:class:`~hotremove.explore.state.SavedState`) and, for schedule ``k`` of seed ``S``, puts it
back, derives every random choice from ``(S, k)`` — which actors do how many operations on
which pages, and who runs at each preemption point — runs the engine's ``offline()`` as one
actor among the others, then checks the end invariants. ``(S, k)`` replays the schedule bit
for bit (the trace digest says so).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hotremove.explore.actors import ACTORS, BODIES, World
from hotremove.explore.focus import Focus
from hotremove.explore.invariants import (
    SOUND_WHILE_RUNNING,
    Continuous,
    disk_findings,
    golden_from_machine,
    locks_held,
    machine_findings,
)
from hotremove.explore.scheduler import (
    DONE,
    Chooser,
    Finding,
    RandomChooser,
    Scheduler,
    TraceEvent,
    actor_main,
)
from hotremove.explore.state import SavedState
from hotremove.hooks import Hooks
from hotremove.locking.lockdep import InstrumentedLocks, Lockdep
from hotremove.mm.memory_block import offline
from hotremove.model.locks import Mutex, SpinLock, Task, set_tracker
from hotremove.model.machine import Machine
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.sim.verify import sync

#: Actor name → the task name it runs as (what traces and lock reports show).
TASK_NAMES = {
    "writeback": "flush",
    "writer": "writer",
    "journal": "kjournald",
    "reader": "reader",
    "io": "irq",
}

#: simulated seconds until the explored offline's signal: a kernel that rescans until a
#: signal (6.x) would otherwise spin through many rounds — and scheduler steps — on a page
#: its actors never release; one second leaves every actor time to run
EXPLORE_TIMEOUT = 1.0


@dataclass
class ScheduleResult:
    seed: int
    schedule: int
    actors: tuple[str, ...]
    findings: list[Finding]
    trace: list[TraceEvent]
    digest: str
    steps: int
    switches: int
    offlined: bool = False
    migrated: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.findings)


@dataclass
class ExploreResult:
    seed: int
    first: int
    schedules_run: int = 0
    offlined: int = 0
    steps: int = 0
    switches: int = 0
    wall_seconds: float = 0.0
    failure: ScheduleResult | None = None
    digests: list[str] = field(default_factory=list)
    focus: Focus | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def problems(self) -> list[str]:
        """The failing schedule's findings (empty when every schedule passed)."""
        if self.failure is None:
            return []
        return [f"schedule {self.failure.schedule}: {f}" for f in self.failure.findings]


class Explorer:
    """Explores interleavings of one machine's offline with the chosen actors."""

    def __init__(
        self,
        machine: Machine,
        hooks: Hooks,
        blocks: Sequence[int],
        *,
        mode: MigrateMode = MigrateMode.SYNC,
        policy: str = "auto",
        max_rounds: int = 3,
        actors: Sequence[str] = ACTORS,
        golden: dict[tuple[str, str], bytearray] | None = None,
        ops: int = 3,
        max_steps: int = 20_000,
        full_check: Callable[[], list[Finding]] | None = None,
        focus: Focus | None = None,
    ) -> None:
        unknown = [a for a in actors if a not in ACTORS]
        if unknown:
            raise ValueError(f"unknown actor(s) {', '.join(unknown)} (known: {', '.join(ACTORS)})")
        self.machine = machine
        self.hooks = hooks
        self.blocks = list(blocks)
        self.mode = mode
        self.policy = policy
        self.max_rounds = max_rounds
        self.ops = ops
        self.max_steps = max_steps
        self.full_check = full_check
        #: the window a focused explorer interleaves at (None: every page of the region)
        self.focus = focus
        window = {mapping for mapping, _ in focus.keys} if focus is not None else set()
        self.focus_files = [m for m in machine.mappings if id(m) in window]
        self.golden = golden if golden is not None else golden_from_machine(machine)
        journalled = [sb for sb in machine.superblocks if sb.s_journal is not None]
        #: actors that have something to do on this machine (no journal actor without one)
        self.actors = tuple(a for a in actors if a != "journal" or journalled)
        self.journal_locks: dict[int, tuple[Mutex, SpinLock]] = {}
        self._wrapped: list[Any] = []
        for sb in journalled:
            self._serialise_flush(sb)
        machine.materialise_images()  # restored between schedules: must not be shared
        images = sorted({sb.s_bdev.path for sb in machine.superblocks})
        self.saved = SavedState((machine, self.golden), images)

    def _serialise_flush(self, sb: Any) -> None:
        """kjournald and the plugin's own ``flush`` (run between migration passes and by
        sync) take the same ``j_checkpoint_mutex``, as jbd2_journal_flush does."""
        mutex = Mutex(f"{sb.s_id}:j_checkpoint_mutex")
        self.journal_locks[id(sb)] = (mutex, SpinLock(f"{sb.s_id}:j_list_lock"))
        journal = sb.s_journal
        flush = journal.flush

        def locked_flush() -> None:
            with mutex:
                flush()

        journal.flush = locked_flush
        self._wrapped.append(journal)

    def close(self) -> None:
        """Put the machine back as it was given, without the explorer's wrappers."""
        self.saved.restore()
        for journal in self._wrapped:
            journal.__dict__.pop("flush", None)

    # -- one schedule -----------------------------------------------------------------------
    def run_schedule(
        self,
        seed: int,
        schedule: int,
        chooser: Chooser | None = None,
        *,
        full: bool = False,
    ) -> ScheduleResult:
        self.saved.restore()
        rng = random.Random(f"hotremove-explore/{seed}/{schedule}")
        chooser = chooser or RandomChooser(random.Random(rng.getrandbits(64)))
        focus = self.focus
        world = World(self.machine, self.golden, rng, journal_locks=self.journal_locks, focus=focus)
        scheduler = Scheduler(
            chooser,
            max_steps=self.max_steps,
            check=Continuous(world, self.blocks),
            covers=focus.covers if focus is not None else None,
        )
        machine = self.machine
        outcome: list[Any] = []

        def migrate() -> None:
            outcome.append(
                offline(
                    machine,
                    self.hooks,
                    self.blocks,
                    mode=self.mode,
                    policy=self.policy,
                    checks=True,  # no deferred copies: other actors see the new pages at once
                    max_rounds=self.max_rounds,
                    timeout=EXPLORE_TIMEOUT,
                )
            )

        tasks = [machine.task]
        scheduler.add(machine.task.name, actor_main(migrate), machine.task)
        world.wait = lambda until, what: scheduler.block(until, what, None)
        world.quiet = lambda: all(a.state == DONE for a in scheduler.actors if a.name != "irq")
        for name in (*self.actors, "io"):
            task = Task(TASK_NAMES[name], waiter=machine.wake)
            tasks.append(task)
            actor_world = replace(world, rng=random.Random(rng.getrandbits(64)))
            ops = rng.randint(1, self.ops)
            scheduler.add(task.name, actor_main(BODIES[name], actor_world, ops), task)
        locks = InstrumentedLocks(Lockdep(), scheduler=scheduler)
        locks.focus_pfns = focus.pfns if focus is not None else None
        old = set_tracker(locks)
        try:
            scheduler.run()
        finally:
            set_tracker(old)
        findings = list(scheduler.findings)
        result = ScheduleResult(
            seed,
            schedule,
            self.actors,
            findings,
            scheduler.trace,
            scheduler.digest,
            scheduler.steps,
            scheduler.switches,
        )
        if findings:
            return result
        if outcome:
            result.offlined = outcome[0].offlined
            result.migrated = outcome[0].migrated
            findings.extend(self._offline_findings(outcome[0]))
        findings.extend(self._end_findings(world, tasks, full))
        return result

    def _offline_findings(self, offline_result: Any) -> list[Finding]:
        found = [
            Finding("strategy_crash", str(f["reason"]), self.machine.task.name)
            for f in offline_result.failed
            if f.get("errno") == Errno.EPLUGIN.label
        ]
        found += [
            Finding(f"check:{c.check}", f"pfn {c.pfn:#x}: {c.message}", self.machine.task.name)
            for c in offline_result.check_failures
            if c.check in SOUND_WHILE_RUNNING
        ]
        return found

    def _end_findings(self, world: World, tasks: list[Task], full: bool) -> list[Finding]:
        found = [
            Finding("io_in_flight", f"{io.actor}: block {io.bh.b_blocknr}") for io in world.inflight
        ]
        found += locks_held(tasks)
        found += machine_findings(self.machine, self.blocks)
        if found:
            return found
        # a focused schedule writes back and reads back the window's files (the first
        # schedule's full check covers every file): the rest moved on the batched path,
        # which check_machine and the per-page checks already vouch for
        files = self.focus_files if self.focus is not None else None
        sync(self.machine, self.hooks, flush=False, mappings=files)
        found += disk_findings(world, files)
        if full and not found and self.full_check is not None:
            found += self.full_check()
        return found

    # -- many schedules ---------------------------------------------------------------------
    def explore(
        self,
        seed: int,
        schedules: int,
        *,
        first: int = 0,
        full_every: int = 0,
        progress: Callable[[ScheduleResult], None] | None = None,
    ) -> ExploreResult:
        """Schedules ``first`` … ``first + schedules - 1``; stop at the first failure. The
        first schedule (and every ``full_every``-th) also runs the full verification."""
        result = ExploreResult(seed, first, focus=self.focus)
        start = time.perf_counter()
        for k in range(first, first + schedules):
            full = k == first or bool(full_every and (k - first) % full_every == 0)
            one = self.run_schedule(seed, k, full=full)
            result.schedules_run += 1
            result.offlined += one.offlined
            result.steps += one.steps
            result.switches += one.switches
            result.digests.append(one.digest)
            if progress is not None:
                progress(one)
            if one.failed:
                result.failure = one
                break
        result.wall_seconds = time.perf_counter() - start
        return result
