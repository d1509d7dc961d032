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

One :class:`Offliner` is one call over one memory block; :mod:`hotremove.mm.memory_block`
makes the calls, block by block.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import structlog

from hotremove.mm.migrate_pages import (
    ATTEMPT_SECONDS,
    NR_MAX_MIGRATE_PAGES_RETRY,
    Interrupted,
    Migrator,
)
from hotremove.mm.page_writeback import wait_for_all
from hotremove.mm.result import (
    ANON,
    SWAP,
    BlockResult,
    busy_reason,
    failure_reason,
)
from hotremove.model.machine import Machine
from hotremove.model.memory import ISOLATED, OFFLINE, ONLINE
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import PG_UNMOVABLE, PageArray, PG_swapcache, PG_tail
from hotremove.sim.checks import CheckFailure
from hotremove.sim.classify import CLASSES, classify_frames
from hotremove.sim.faults import eio_injector

log = structlog.get_logger("hotremove.mm")

DEFAULT_MAX_ROUNDS = 3
#: seconds until the user's signal (``timeout 120 sh -c 'echo offline > …'``)
DEFAULT_TIMEOUT = 120.0

#: Errors after which another round cannot help: stop and roll back.
FATAL = {Errno.ENOMEM, Errno.EIO, Errno.EPLUGIN}


class Offliner:
    """One ``offline_pages`` call over one memory block (its result goes into the shared
    :class:`OfflineResult`, and its own figures into a :class:`BlockResult`)."""

    def __init__(
        self,
        machine: Machine,
        block: int,
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
        self.blocks = [block]
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
        #: the rounds of this call (the shared result counts every call's)
        self.rounds = 0
        #: every frame of the block being offlined
        b = machine.memory.blocks[block]
        self.region = np.arange(b.start_pfn, b.end_pfn)

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
        self.result.isolated_free += int(self.memory.free_map[region].sum())
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

    def offline_pages(self) -> BlockResult:
        start = time.perf_counter()
        result = self.result
        clock = self.machine.clock
        before = self._counters()
        mine = BlockResult(self.blocks[0], pages_in_region=len(self.region))
        nr_failed = len(result.failed)
        result.pages_in_region += len(self.region)
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
                mine.offlined = True
            else:
                self.undo_isolate_page_range()
                mine.reason = self.record_failures(failed, nr_failed)
        else:
            mine.reason = "failure to isolate range: unmovable pages"
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
        for label, stats in ((ANON, self.migrator.anon), (SWAP, self.migrator.swap)):
            if stats.pages:
                result.per_aops[label] = stats
        result.totals()
        after = self._counters()
        mine.migrated, mine.rebound, mine.written_back = (after[i] - before[i] for i in range(3))
        mine.failed_attempts, mine.passes = after[3] - before[3], after[4] - before[4]
        mine.batched = after[6] - before[6]
        mine.failed = len(result.failed) - nr_failed
        mine.rounds = self.rounds
        mine.simulated_seconds = after[5] - before[5]
        mine.elapsed_seconds = clock.now - self.started
        mine.wall_seconds = time.perf_counter() - start
        result.wall_seconds += mine.wall_seconds
        result.per_block.append(mine)
        log.info(
            "offline_finished",
            block=mine.block,
            offlined=mine.offlined,
            migrated=mine.migrated,
            failed=mine.failed,
            passes=mine.passes,
            reason=mine.reason or None,
        )
        return mine

    def _counters(self) -> tuple[int, int, int, int, int, float, int]:
        """The shared result's running totals a call's own figures are the difference of."""
        r = self.result
        clock = self.machine.clock
        return (
            r.migrated,
            r.rebound,
            r.written_back,
            r.failed_attempts,
            r.passes,
            clock.cpu_seconds + clock.io_seconds,
            r.batched,
        )

    def bounded_rounds(self) -> dict[int, Errno]:
        """The 2004 seed's retries: at most ``max_rounds`` rounds of ``migrate_pages`` (the
        first in the requested mode, then SYNC); -ENOMEM, -EIO and a plugin's exception end
        it at once."""
        failed: dict[int, Errno] = {}
        for rnd in range(1, self.max_rounds + 1):
            self.rounds += 1
            self.result.rounds += 1
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
            self.rounds += 1
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
                self.rounds += spins
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
    def record_failures(self, failed: dict[int, Errno], since: int) -> str:
        """Pages that never moved, with the reason of their last attempt (the kernel's error
        name, and for -EAGAIN what held the page); returns the call's reason line (its own
        failures: ``result.failed[since:]``)."""
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
        reasons = Counter(str(f["reason"]) for f in result.failed[since:])
        return failure_reason(failed, reasons, self.rounds, self.interrupted)

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
        table = self.result.classes
        for code in np.unique(codes).tolist():
            mine = codes == code
            row = table.setdefault(CLASSES[code], {"pages": 0, "migrated": 0, "failed": 0})
            row["pages"] += int(mine.sum())
            row["migrated"] += int(moved[mine].sum())
            row["failed"] += int(failed[mine].sum())
        self.result.classes = dict(sorted(table.items()))
