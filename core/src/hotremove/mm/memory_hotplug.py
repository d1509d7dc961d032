"""``offline_pages`` (mm/memory_hotplug.c) over ``migrate_pages`` (mm/migrate.c).

``offline_pages`` → ``start_isolate_page_range`` (fails on unmovable pages) → repeat
{``scan_movable_pages`` → ``do_migrate_range`` → ``migrate_pages``} → ``test_pages_isolated``
→ ``__offline_isolated_pages``; on failure ``undo_isolate_page_range``.

Passes: in the first ``migrate_pages`` round the first pass uses the requested mode and every
later pass ``SYNC`` (the escalation hot-remove needs). The kernel's ``do_migrate_range`` always
asks for SYNC, and its ``migrate_pages_sync`` runs 3 ASYNC batch passes before 7 SYNC ones:
the same escalation, with a different count. Within a round ``-EAGAIN`` is retried for up to
``NR_MAX_MIGRATE_PAGES_RETRY`` passes and any other error is final for that round;
``offline_pages`` rescans and tries again in SYNC, like the kernel, but gives up after
``max_rounds`` (the kernel loops until a signal) and reports the last reason of each page.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import structlog

from hotremove.errors import HotremoveError
from hotremove.hooks import Hooks
from hotremove.kernels import Kernel
from hotremove.mm.migrate_pages import (
    ATTEMPT_SECONDS,
    NR_MAX_MIGRATE_PAGES_RETRY,
    Interrupted,
    Migrator,
    ProgressFn,
)
from hotremove.mm.page_writeback import wait_for_all
from hotremove.mm.result import ANON, SWAP, OfflineResult, busy_reason, failure_reason
from hotremove.model.locks import running
from hotremove.model.machine import Machine
from hotremove.model.memory import ISOLATED, OFFLINE, ONLINE
from hotremove.model.migrate_mode import DEFAULT_POLICY, Errno, MigrateMode
from hotremove.model.page import PG_UNMOVABLE, PageArray, PG_swapcache, PG_tail
from hotremove.sim.checks import CheckFailure, check_machine
from hotremove.sim.classify import CLASSES, classify_frames
from hotremove.sim.faults import FaultSettings, eio_injector

log = structlog.get_logger("hotremove.mm")

DEFAULT_MAX_ROUNDS = 3
#: seconds until the user's signal (``timeout 120 sh -c 'echo offline > …'``)
DEFAULT_TIMEOUT = 120.0

#: Errors after which another round cannot help: stop and roll back.
FATAL = {Errno.ENOMEM, Errno.EIO, Errno.EPLUGIN}


class OfflineError(HotremoveError):
    """The request itself is invalid (-EINVAL): nonexistent or already offline block."""


class Offliner:
    """One ``offline_pages`` call over some memory blocks."""

    def __init__(
        self,
        machine: Machine,
        blocks: list[int],
        migrator: Migrator,
        *,
        mode: MigrateMode,
        max_rounds: int,
        fault_seed: int,
        timeout: float = 120.0,
    ) -> None:
        self.machine = machine
        self.memory = machine.memory
        self.migrator = migrator
        self.result = migrator.result
        self.blocks = sorted(set(blocks))
        self.mode = mode
        self.max_rounds = max_rounds
        self.timeout = timeout
        self.fault_seed = fault_seed
        #: the simulated time the offline began (``remove.timeout`` counts from it)
        self.started = machine.clock.now
        #: each page's error in the last round (an -EINTR report keeps them)
        self.last_errors: dict[int, Errno] = {}
        #: how a signal ended the offline ("" when none did)
        self.interrupted = ""
        #: every frame of the blocks being offlined, in order
        self.region = np.concatenate(
            [
                np.arange(machine.memory.blocks[b].start_pfn, machine.memory.blocks[b].end_pfn)
                for b in self.blocks
            ]
        )

    # -- isolation (mm/page_isolation.c) ---------------------------------------------------
    def start_isolate_page_range(self) -> bool:
        """Switch the blocks to MIGRATE_ISOLATE; fail (-EBUSY) if a page can never move."""
        memory = self.memory
        for b in self.blocks:
            memory.set_block_state(b, ISOLATED)
        region = self.region
        mm = memory.pages
        unmovable = region[(mm.refcount[region] != 0) & (mm.flags[region] & PG_UNMOVABLE != 0)]
        for pfn in unmovable.tolist():
            self.result.add_failure(pfn, "unmovable", Errno.EBUSY)
        if len(unmovable):
            log.info("isolation_failed", unmovable=len(unmovable), first_pfn=int(unmovable[0]))
            self.undo_isolate_page_range()
            return False
        self.result.isolated_free = int(self.memory.free_map[region].sum())
        return True

    def undo_isolate_page_range(self) -> None:
        for b in self.blocks:
            self.memory.set_block_state(b, ONLINE)

    def test_pages_isolated(self) -> bool:
        return bool(self.memory.free_map[self.region].all())

    def offline_isolated_pages(self) -> None:
        """``__offline_isolated_pages``: the range leaves the allocator for good."""
        for b in self.blocks:
            self.memory.set_block_state(b, OFFLINE)

    # -- the main loop ----------------------------------------------------------------------
    def scan_movable_pages(self) -> PageArray:
        region = self.region
        mm = self.memory.pages
        return PageArray(mm, region[mm.refcount[region] != 0])

    def do_migrate_range(self, mode: MigrateMode) -> dict[int, Errno]:
        return self.migrator.migrate_pages(self.scan_movable_pages(), mode)

    def offline_pages(self) -> OfflineResult:
        start = time.perf_counter()
        result = self.result
        result.pages_in_region = len(self.region)
        classes = self.classify_region()
        self.count_pages_per_strategy()  # also resolves each mapping's strategy once
        failed: dict[int, Errno] = {}
        bad_before = len(self.memory.bad_pages)
        if self.start_isolate_page_range():
            devices = [sb.s_bdev for sb in self.machine.superblocks]
            inject = eio_injector(self.migrator.faults.writeback_eio, self.fault_seed)
            for bdev in devices:
                bdev.fault = inject
            try:
                if self.machine.kernel.retry_until_signal:
                    failed = self.rescan_until_signal()
                else:
                    failed = self.bounded_rounds()
            except Interrupted:
                self.migrator.mc.flush_copies()
                failed = {p.pfn: Errno.EINTR for p in self.scan_movable_pages()}
                self.interrupted = "interrupted"
            finally:
                for bdev in devices:
                    bdev.fault = None
            if not failed and self.test_pages_isolated():
                self.offline_isolated_pages()
                result.offlined = True
            else:
                self.undo_isolate_page_range()
                self.record_failures(failed)
        else:
            result.reason = "failure to isolate range: unmovable pages"
        self.count_classes(classes)
        # bad_page(): the kernel checks every freed page, whatever the debug options
        result.check_failures.extend(
            CheckFailure(
                b.pfn,
                "bad_page_state",
                f"BUG: Bad page state: {b.reason} (flags {b.flags:#x}); the page was not freed",
            )
            for b in self.memory.bad_pages[bad_before:]
        )
        result.totals()
        for label, stats in ((ANON, self.migrator.anon), (SWAP, self.migrator.swap)):
            if stats.pages:
                result.per_aops[label] = stats
        if self.migrator.checks:
            result.check_failures.extend(check_machine(self.machine, self.blocks))
        result.wall_seconds = time.perf_counter() - start
        log.info(
            "offline_finished",
            offlined=result.offlined,
            migrated=result.migrated,
            failed=len(result.failed),
            passes=result.passes,
            reason=result.reason or None,
        )
        return result

    def bounded_rounds(self) -> dict[int, Errno]:
        """The 2004 seed's retries: at most ``max_rounds`` rounds of ``migrate_pages`` (the
        first in the requested mode, then SYNC); -ENOMEM, -EIO and a plugin's exception end
        it at once."""
        failed: dict[int, Errno] = {}
        for rnd in range(1, self.max_rounds + 1):
            self.result.rounds = rnd
            mode = self.mode if rnd == 1 else MigrateMode.SYNC
            failed = self.do_migrate_range(mode)
            self.result.failed_attempts += len(failed)
            if not failed or FATAL & set(failed.values()):
                break
            self.migrator.background_work()  # a rescan after a cond_resched()
        return failed

    def rescan_until_signal(self) -> dict[int, Errno]:
        """``offline_pages`` since v4.15 (72b39cfc4d75, ecde0f3e7f9e): ``do_migrate_range``
        ignores what ``migrate_pages`` returns and the range is rescanned until every page is
        gone — or a signal arrives (the user's ``timeout``: ``remove.timeout`` simulated
        seconds, then -EINTR). A round that moves nothing would be repeated identically until
        the next kernel timer (a jbd2 commit, the flusher) changes something, so the clock
        skips ahead to it and the rounds in between are counted, not run."""
        result = self.result
        machine = self.machine
        clock, timers = machine.clock, machine.timers
        deadline = self.started + self.timeout
        waited = False  # the last round already let the holders finish, to no avail
        while True:
            result.rounds += 1
            moved = result.migrated
            retries = Counter(result.retries)
            failed = self.do_migrate_range(self.mode)
            if not failed:
                return failed
            result.failed_attempts += len(failed)  # PGMIGRATE_FAIL: once per folio per call
            self.last_errors = failed
            if Errno.EPLUGIN in failed.values():  # a plugin's bug, not a kernel state
                return failed
            self.migrator.background_work()
            if clock.now >= deadline:
                return self.timed_out(failed)
            if result.migrated > moved or machine.daemons:
                waited = False
                continue  # progress, or holders that let go pass by pass: rescan at once
            if machine.waiters and not waited:  # in-flight I/O completes, holders unlock
                wait_for_all(machine)
                waited = True
                continue
            waited = False
            nxt = timers.next_expiry()
            until = deadline if nxt is None else min(nxt, deadline)
            # a round that moves nothing costs its failed attempts (a deterministic figure:
            # the batched and the per-page path must count the same rounds)
            per_round = len(failed) * NR_MAX_MIGRATE_PAGES_RETRY * ATTEMPT_SECONDS
            # rounded first: the two paths sum the same copy times in a different order
            spins = int(round((until - clock.now) / per_round, 6))
            if spins > 0:
                result.rounds += spins
                result.spun_rounds += spins
                result.failed_attempts += spins * len(failed)
                for label, n in (Counter(result.retries) - retries).items():
                    result.retries[label] += spins * n
            timers.idle_until(until)
            if until >= deadline:
                return self.timed_out(failed)

    def timed_out(self, failed: dict[int, Errno]) -> dict[int, Errno]:
        """The signal: every page still here backs off with -EINTR ("signal backoff"); each
        keeps the error of its last attempt for the report."""
        self.last_errors = failed
        self.interrupted = f"stopped after {self.timeout:g} s"
        return {p.pfn: Errno.EINTR for p in self.scan_movable_pages()}

    # -- accounting -------------------------------------------------------------------------
    def record_failures(self, failed: dict[int, Errno]) -> None:
        """Pages that never moved, with the reason of their last attempt (the kernel's error
        name, and for -EAGAIN what held the page)."""
        result = self.result
        plugin_errors = self.migrator.plugin_errors
        for pfn, rc in sorted(failed.items()):
            last = self.last_errors.get(pfn, rc) if rc is Errno.EINTR else rc
            page = self.memory.pages[pfn]
            if last is Errno.EAGAIN:
                reason = busy_reason(page)
            elif last is Errno.EPLUGIN and plugin_errors:
                reason = plugin_errors[-1]
            else:
                reason = last.label
            result.add_failure(pfn, reason, rc)
            self.migrator.strategy_for(page)[2].failed += 1
            self.machine.vmstat.pgmigrate_fail += 1
        reasons = Counter(str(f["reason"]) for f in result.failed)
        result.reason = failure_reason(failed, reasons, result.rounds, self.interrupted)

    def classify_region(self) -> tuple[np.ndarray, np.ndarray]:
        """Every head page or free frame of the range, and its class (before anything
        moves)."""
        region = self.region
        heads = region[self.memory.pages.flags[region] & PG_tail == 0]
        return heads, classify_frames(self.machine, heads)

    def count_pages_per_strategy(self) -> None:
        """Pages per a_ops row; asks for each mapping's strategy once (per swap-cache state:
        a swap-cache page goes through ``swap_aops``)."""
        mm = self.memory.pages
        pages = self.scan_movable_pages()
        ids = pages.mapping_ids().astype(np.int64)
        swap = (mm.flags[pages.pfns] & PG_swapcache != 0).astype(np.int64)
        keys = np.stack([ids, swap], axis=1)
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        for i, n in zip(first.tolist(), counts.tolist(), strict=True):
            self.migrator.strategy_for(pages[i])[2].pages += n

    def count_classes(self, classes: tuple[np.ndarray, np.ndarray]) -> None:
        pfns, codes = classes
        failed = np.isin(pfns, [f["pfn"] for f in self.result.failed])
        moved = self.migrator.moved[pfns]
        table: dict[str, dict[str, int]] = {}
        for code in np.unique(codes).tolist():
            mine = codes == code
            table[CLASSES[code]] = {
                "pages": int(mine.sum()),
                "migrated": int(moved[mine].sum()),
                "failed": int(failed[mine].sum()),
            }
        self.result.classes = dict(sorted(table.items()))


def offline(
    machine: Machine,
    hooks: Hooks,
    blocks: list[int],
    *,
    mode: MigrateMode = MigrateMode.SYNC,
    policy: str = DEFAULT_POLICY,
    checks: bool = True,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    progress: ProgressFn | None = None,
    faults: FaultSettings | None = None,
    fault_seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    batching: bool = True,
    kernel: Kernel | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    start: float = 0.0,
) -> OfflineResult:
    """Offline memory ``blocks`` of ``machine``: move every in-use page out, or roll back.
    ``batching=False`` sends every page through the per-page path (the reference the
    batched path of :mod:`hotremove.mm.batch` is tested against).
    ``should_stop`` is polled at batch boundaries (a pending signal: -EINTR, rolled back).
    A scenario's settings come as ``**scenario.offline_kwargs()``."""
    nr_blocks = len(machine.memory.blocks)
    for b in blocks:
        if not 0 <= b < nr_blocks:
            raise OfflineError(
                f"remove.blocks: block {b} does not exist (memory has blocks 0-{nr_blocks - 1})"
            )
        if machine.memory.block_state[b] != ONLINE:
            raise OfflineError(f"remove.blocks: block {b} is {machine.memory.block_state[b]}")
    if kernel is not None and kernel is not machine.kernel:
        raise OfflineError(
            f"kernel.version: this machine was built for kernel {machine.kernel.version}, "
            f"not {kernel.version}"
        )
    result = OfflineResult(sorted(set(blocks)), mode, policy, kernel=machine.kernel.version)
    migrator = Migrator(
        machine,
        hooks,
        result,
        policy=policy,
        checks=checks,
        faults=faults or FaultSettings(),
        progress=progress,
        should_stop=should_stop,
        batching=batching,
    )
    # the time between the workload's writes and the offline
    machine.timers.idle_until(machine.writes_end + start)
    offliner = Offliner(
        machine,
        blocks,
        migrator,
        mode=mode,
        max_rounds=max_rounds,
        fault_seed=fault_seed,
        timeout=timeout,
    )
    # A cyclic collection in the middle of the run (the per-page path makes many short-lived
    # handles) is a cost the kernel does not have; the offline creates no reference cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with running(machine.task):
            return offliner.offline_pages()
    finally:
        if collecting:
            gc.enable()
