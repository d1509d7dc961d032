"""``migrate_pages`` (mm/migrate.c): the passes over a list of folios, per kernel.

:class:`Migrator` holds what one offline's ``migrate_pages`` calls share — the strategies
resolved so far, the batched path, the per-a_ops counters, the injected faults — and runs the
passes the simulated kernel runs (:mod:`hotremove.kernels`); each attempt on one folio is
:mod:`hotremove.mm.migrate_folio`'s. Runs of ordinary pages whose strategy is one of the
core's — or a declared ``fallback_migrate_folio``, for its clean pages — move together on
arrays (:mod:`hotremove.mm.batch`, tested to leave exactly the machine the per-page path
leaves). The strategy is asked for once per address_space through
the ``hotremove_migrate_strategy`` hook and then called directly: a hook dispatch per page
would dominate the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import structlog

from hotremove.hooks import Hooks
from hotremove.mm.batch import MIN_RUN, BatchMover, pieces
from hotremove.mm.folio import (
    try_split_folio,
)
from hotremove.mm.migrate import MIGRATE_FOLIO, MigrateControl, MigrateStrategy
from hotremove.mm.migrate_folio import FolioSteps
from hotremove.mm.result import AopsStats, OfflineResult
from hotremove.model.address_space import AddressSpace, AnonVma, SwapCache
from hotremove.model.locks import tracker
from hotremove.model.machine import Machine
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    Page,
    PageArray,
    PG_swapcache,
)
from hotremove.sim.faults import FaultSettings, RaisingStrategy

log = structlog.get_logger("hotremove.mm")

NR_MAX_MIGRATE_PAGES_RETRY = 10
NR_MAX_MIGRATE_ASYNC_RETRY = 3
NR_MAX_MIGRATE_SYNC_RETRY = NR_MAX_MIGRATE_PAGES_RETRY - NR_MAX_MIGRATE_ASYNC_RETRY
NR_MAX_BATCHED_MIGRATION = 512  # HPAGE_PMD_NR
#: simulated CPU time of one failed migration attempt on one folio (isolate, trylock, a
#: reference check, put back): what a spinning offline burns per page and pass
ATTEMPT_SECONDS = 1e-6

ProgressFn = Callable[[int], None]
Strategy = tuple[MigrateStrategy, AopsStats]


class Interrupted(Exception):
    """The run was asked to stop (a signal): back off at the next batch boundary."""


class Migrator(FolioSteps):
    """The state one offline's ``migrate_pages`` calls share: the strategies resolved so far,
    the batched path, the per-a_ops counters, the injected faults."""

    def __init__(
        self,
        machine: Machine,
        hooks: Hooks,
        result: OfflineResult,
        *,
        policy: str,
        checks: bool,
        faults: FaultSettings,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        batching: bool = True,
    ) -> None:
        self.machine = machine
        self.memory = machine.memory
        self.hooks = hooks
        self.result = result
        self.policy = policy
        self.checks = checks
        self.faults = faults
        self.progress = progress
        self.should_stop = should_stop
        self.batching = batching
        self._alloc_budget = faults.enomem_after
        self.mc = MigrateControl(
            frames=machine.memory.frames,
            clock=machine.clock,
            vmstat=machine.vmstat,
            copy_seconds=machine.preset.copy_seconds(4096),
            sync_light_skips_io=machine.kernel.sync_light_skips_io,
        )
        self._strategies: dict[int, Strategy] = {}
        self.anon = AopsStats(plugin="core", strategy=MIGRATE_FOLIO.name)
        self.swap = AopsStats(plugin="core", strategy=MIGRATE_FOLIO.name)
        self.moved = np.zeros(machine.memory.nr_pages, bool)  # frames moved out
        self.mover = BatchMover(self.memory, self.mc, self.moved, result)
        self.plugin_errors: list[str] = []

    # -- strategy lookup: once per address_space ------------------------------------------
    def strategy_for(
        self, page: Page
    ) -> tuple[AddressSpace | SwapCache | None, MigrateStrategy, AopsStats]:
        """The address_space ``migrate_folio`` sees and the strategy for it. Anonymous pages
        are the core's (``migrate_folio``; a swap-cache page through ``swap_aops``)."""
        mapping = page.mapping
        if mapping is None or isinstance(mapping, AnonVma):
            if page.flags & PG_swapcache:
                return self.machine.swap_cache, MIGRATE_FOLIO, self.swap
            return None, MIGRATE_FOLIO, self.anon
        cached = self._strategies.get(id(mapping))
        if cached is None:
            strategy, plugin = self.hooks.migrate_strategy(
                mapping, self.policy, self.machine.kernel
            )
            if plugin == self.faults.plugin_raises:
                strategy = RaisingStrategy(strategy, plugin)
            name = mapping.a_ops.name
            stats = self.result.per_aops.get(name)
            if stats is None:
                stats = self.result.per_aops[name] = AopsStats(plugin, strategy.name)
            cached = self._strategies[id(mapping)] = (strategy, stats)
            self.mover.learn(mapping, strategy, stats)
        return mapping, cached[0], cached[1]

    def migrate_pages(self, pages: Sequence[Page], mode: MigrateMode) -> dict[int, Errno]:
        """One ``migrate_pages`` call over ``pages``, run the way the simulated kernel runs
        it (:mod:`hotremove.kernels`); returns the pages that did not move with their last
        error."""
        style = self.machine.kernel.passes
        if style == "batched" and mode is not MigrateMode.ASYNC:
            return self.migrate_pages_sync(pages, mode)
        if style == "batched":
            return self.passes(pages, [MigrateMode.ASYNC] * NR_MAX_MIGRATE_PAGES_RETRY)
        if style == "classic":  # v6.1: the same mode every pass, waits forced from pass 3
            return self.passes(pages, [mode] * NR_MAX_MIGRATE_PAGES_RETRY, force_from=3)
        # the seed: the requested mode first, then SYNC
        return self.passes(pages, [mode] + [MigrateMode.SYNC] * (NR_MAX_MIGRATE_PAGES_RETRY - 1))

    def migrate_pages_sync(self, pages: Sequence[Page], mode: MigrateMode) -> dict[int, Errno]:
        """``migrate_pages_sync`` (v6.3+): each batch first in ASYNC for
        ``NR_MAX_MIGRATE_ASYNC_RETRY`` passes, then every folio that failed — -EBUSY included —
        alone in ``mode`` for ``NR_MAX_MIGRATE_SYNC_RETRY`` passes ("All failed folios except
        split THPs will be retried", mm/migrate.c)."""
        failed: dict[int, Errno] = {}
        mm = self.memory.pages
        for start in range(0, len(pages), NR_MAX_BATCHED_MIGRATION):
            batch = pages[start : start + NR_MAX_BATCHED_MIGRATION]
            first = self.passes(batch, [MigrateMode.ASYNC] * NR_MAX_MIGRATE_ASYNC_RETRY)
            if Errno.ENOMEM in first.values():  # no memory: stop, as migrate_pages does
                failed.update(first)
                for page in pages[start + NR_MAX_BATCHED_MIGRATION :]:
                    failed.setdefault(page.pfn, Errno.ENOMEM)
                return failed
            for pfn in first:
                page = Page(mm, pfn)
                if not page._refcount:
                    continue
                again = self.passes([page], [mode] * NR_MAX_MIGRATE_SYNC_RETRY)
                failed.update(again)
                if Errno.ENOMEM in again.values():
                    return failed
        return failed

    def passes(
        self, pages: Sequence[Page], modes: list[MigrateMode], force_from: int = 0
    ) -> dict[int, Errno]:
        """Passes over ``pages`` (``migrate_pages_batch``'s retry loop), pass *i* in
        ``modes[i]``: -EAGAIN is retried in the next pass, any other error is final for this
        call, -ENOMEM stops it. Each pass goes through the pages in batches of
        NR_MAX_BATCHED_MIGRATION; the migrating task sleeps between passes (background work
        runs)."""
        failed: dict[int, Errno] = {}
        todo: Sequence[Page] = pages
        for pass_idx, mode in enumerate(modes):
            if not todo:
                break
            self.result.passes += 1
            retry: list[Page] = []
            moved = 0
            force = pass_idx >= force_from
            for start in range(0, len(todo), NR_MAX_BATCHED_MIGRATION):
                batch = todo[start : start + NR_MAX_BATCHED_MIGRATION]
                n, enomem = self.migrate_pages_batch(batch, mode, retry, failed, force)
                moved += n
                if enomem:  # stop: every page not moved yet fails with -ENOMEM
                    for rest in [*retry, *todo[start:]]:
                        if rest._refcount and rest.pfn not in failed:
                            failed[rest.pfn] = Errno.ENOMEM
                    return failed
            log.info(
                "pass_finished",
                pass_no=self.result.passes,
                mode=mode.value,
                migrated=moved,
                remaining=len(retry),
            )
            self.hooks.on_pass_finished(self.result.passes, mode, moved, len(retry))
            if retry:  # the task sleeps before the next pass: background work runs
                self.background_work()
            todo = retry
        for page in todo:
            failed[page.pfn] = Errno.EAGAIN
        return failed

    def migrate_pages_batch(
        self,
        batch: Sequence[Page],
        mode: MigrateMode,
        retry: list[Page],
        failed: dict[int, Errno],
        force: bool = True,
    ) -> tuple[int, bool]:
        """Move one batch; -EAGAIN pages go to ``retry``, permanent errors to ``failed``.
        Returns (pages moved, whether -ENOMEM stopped the batch). The batch's data copies
        are done together at its end, as one vectorised memcpy."""
        moved = 0
        enomem = False
        # batched copies only when nobody else runs: under the explorer (or lockdep) another
        # task may look at the new page as soon as it is unlocked
        locks = tracker()
        self.mc.defer_copies = not self.checks and locks is None
        # a focused explorer names the pages other tasks touch: the rest may be batched
        focus = getattr(locks, "focus_pfns", None) if locks is not None else None
        batched = (
            self.batching
            and len(batch) >= MIN_RUN  # a shorter batch has no run worth the arrays
            and (locks is None or focus is not None)
            and self._alloc_budget is None
            and not self.hooks.wants_page_events
        )
        should_stop = self.should_stop
        fast_moved = 0  # the per-page path counts its own into result.migrated
        try:
            if not batched:
                return self.one_by_one(batch, mode, retry, failed, force)
            mover = self.mover
            pfns = (
                batch.pfns
                if isinstance(batch, PageArray)
                else np.fromiter((page.pfn for page in batch), np.int64, len(batch))
            )
            per_page_ran = False
            eligible = mover.eligible(pfns)
            if focus is not None:
                eligible &= ~np.isin(pfns, focus)
            for start, end, fast in pieces(eligible):
                rest = batch[start:end]
                if fast:
                    if should_stop is not None and should_stop():
                        raise Interrupted
                    run = pfns[start:end]
                    # per-page work earlier in this batch may have changed these pages
                    if not per_page_ran:
                        rings = mover.rings_of(start, end)
                    elif mover.eligible(run).all():
                        rings = mover.rings_of(0, end - start)
                    else:
                        rings = None
                    if rings is not None:
                        n = mover.move(run, self.checks, rings)
                        moved += n
                        fast_moved += n
                        rest = rest[n:]
                if rest:
                    per_page_ran = True
                    n, enomem = self.one_by_one(rest, mode, retry, failed, force)
                    moved += n
                    if enomem:
                        break
        finally:
            self.result.migrated += fast_moved
            self.result.batched += fast_moved
            self.mc.flush_copies()
            self.memory.release_dead()  # the old frames are read: their memory may go
            if self.progress is not None and moved:
                self.progress(moved)
        return moved, enomem

    def one_by_one(
        self,
        pages: Sequence[Page],
        mode: MigrateMode,
        retry: list[Page],
        failed: dict[int, Errno],
        force: bool = True,
    ) -> tuple[int, bool]:
        """The per-page path: :meth:`migrate_folio` for each page, checking for a signal at
        every page boundary."""
        moved = 0
        migrate_folio = self.migrate_folio
        counts = self.result.retries
        should_stop = self.should_stop
        try:
            for page in pages:
                if should_stop is not None and should_stop():  # signal_pending()
                    raise Interrupted
                if not page._refcount:  # freed under us (truncated): nothing to move
                    continue
                large = page.order
                rc = migrate_folio(page, mode, force)
                if rc is Errno.OK:
                    moved += 1
                elif rc is Errno.EAGAIN:
                    retry.append(page)
                    counts[rc.label] += 1
                elif rc is Errno.ENOMEM and large and self.machine.kernel.retry_until_signal:
                    # migrate_pages: a large folio that cannot get a destination is split
                    # (try_split_folio) and its base pages go on the list (v6.x)
                    retry.extend(try_split_folio(self.machine, page))
                    counts[rc.label] += 1
                    self.result.thp_split += 1
                elif rc is Errno.ENOMEM:
                    return moved, True
                else:
                    failed[page.pfn] = rc
                    counts[rc.label] += 1
        finally:
            self.result.migrated += moved
        return moved, False

    def background_work(self) -> None:
        """What runs while the migrating task sleeps: the machine's own holders (pins being
        dropped), the kernel timers that are due (jbd2 commits, the flusher) and the plugins'
        background work."""
        self.machine.run_daemons()
        self.machine.timers.run_timers()
        self.hooks.background_work(self.machine, "pass")
