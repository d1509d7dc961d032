"""``migrate_pages`` and the steps of one folio's migration (mm/migrate.c).

One folio goes through the kernel's three steps, each a method named for its function:

* ``migrate_folio_unmap`` — lock the source (trylock in ASYNC), refuse or wait for writeback,
  get a destination (``alloc_migration_target``: -ENOMEM when none), lock it, and replace the
  source's PTEs by migration entries (``try_to_migrate``);
* ``move_to_new_folio`` — the address_space's ``migrate_folio`` (the strategy a plugin gave
  for it, or the core's ``migrate_folio`` for anonymous memory); a plugin that raises is
  contained here and its leftovers released;
* ``migrate_folio_move`` — on success remove the migration PTEs towards the destination,
  unlock both and free the source; on failure ``migrate_folio_undo_src`` /
  ``migrate_folio_undo_dst`` put everything back where it was (PTEs, PG_lru, references).

Isolation (``isolate_folio_to_list``: one reference, PG_lru cleared) and ``putback`` frame
each attempt. Runs of ordinary pages whose strategy is one of the core's move together on
arrays (:mod:`hotremove.engine.batch`, tested to leave exactly the machine the per-page path
leaves). The strategy is asked for once per address_space through the
``hotremove_migrate_strategy`` hook and then called directly: a hook dispatch per page would
dominate the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import structlog

from hotremove.checks import CheckFailure, PageCheck
from hotremove.engine.batch import BatchMover, pieces
from hotremove.engine.result import AopsStats, OfflineResult
from hotremove.faults import FaultSettings, RaisingStrategy
from hotremove.hooks import Hooks
from hotremove.migrate import MIGRATE_FOLIO, MigrateControl, MigrateStrategy
from hotremove.model.address_space import AddressSpace, AnonVma, SwapCache
from hotremove.model.buffer_head import BH_Lock, buffer_ring, unlock_buffer
from hotremove.model.locks import tracker
from hotremove.model.machine import Machine
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    Page,
    PageArray,
    PG_head,
    PG_locked,
    PG_lru,
    PG_mlocked,
    PG_private,
    PG_swapcache,
    PG_tail,
    PG_writeback,
    folio_nr_pages,
    lock_page,
    put_page,
    trylock_page,
    unlock_page,
)

log = structlog.get_logger("hotremove.engine")

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


class Migrator:
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

    # -- one folio ------------------------------------------------------------------------
    def migrate_folio_unmap(
        self, src: Page, mode: MigrateMode, force: bool = True
    ) -> tuple[Errno, Page | None]:
        """Lock src, deal with writeback, get a destination, unmap. On error nothing held.
        ``force`` is v6.1's ``pass > 2``: before it, a contended page lock or writeback in
        flight is -EAGAIN instead of a wait (``__unmap_and_move``)."""
        if not trylock_page(src):
            if mode is MigrateMode.ASYNC or not force:
                return Errno.EAGAIN, None
            lock_page(src)
        if src.flags & PG_writeback:
            if mode is not MigrateMode.SYNC:
                unlock_page(src)
                return Errno.EBUSY, None
            if not force:
                unlock_page(src)
                return Errno.EAGAIN, None
            self.machine.task.wait_for(src, "folio_wait_writeback")
        if src.order or self._alloc_budget is not None:
            dst = self.alloc_migration_target(src)
        else:
            dst = self.memory.alloc_page()
        if dst is None:
            unlock_page(src)
            return Errno.ENOMEM, None
        dst.flags |= PG_locked  # a fresh page: nobody else can hold its lock
        if src._mapcount:
            try_to_migrate(src)
        return Errno.OK, dst

    def alloc_migration_target(self, src: Page) -> Page | None:
        """A frame (or aligned folio) outside the isolated range; None is -ENOMEM. The
        ``enomem_after`` fault makes it fail after that many allocations."""
        if self._alloc_budget is not None:
            if self._alloc_budget == 0:
                return None
            self._alloc_budget -= 1
        return self.memory.alloc_contig(src.order) if src.order else self.memory.alloc_page()

    def move_to_new_folio(
        self,
        strategy: MigrateStrategy,
        stats: AopsStats,
        mapping: AddressSpace | SwapCache | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        """The mapping's ``migrate_folio``. A strategy that raises (a plugin bug) fails the
        page with ``EPLUGIN``; the buffers it left locked on ``src`` are released, those
        another task holds are not."""
        try:
            return strategy.migrate_folio(self.mc, mapping, dst, src, mode)
        except Exception as exc:  # a plugin's bug must not leave locks held or lose data
            waiters = self.machine.waiters
            if src.flags & PG_private:
                for bh in buffer_ring(src.private):
                    if bh.b_state & BH_Lock and bh not in waiters:
                        unlock_buffer(bh)
            self.plugin_errors.append(f"plugin {stats.plugin!r} raised {type(exc).__name__}: {exc}")
            log.warning("strategy_raised", plugin=stats.plugin, pfn=src.pfn, error=str(exc))
            return Errno.EPLUGIN

    def migrate_folio_undo_src(self, src: Page) -> None:
        """The attempt failed: the PTEs point at ``src`` again, it is unlocked and back on
        the LRU with the references it had."""
        remove_migration_ptes(src, src)
        unlock_page(src)
        putback_folio(src)

    def migrate_folio_undo_dst(
        self, src: Page, dst: Page, strategy: MigrateStrategy, rc: Errno
    ) -> None:
        """Free the unused destination — unless the strategy failed after handing it state,
        which the seed called a BUG ("if (PagePrivate(newpage)) BUG();"): freeing it would
        corrupt memory, so it is reported and kept."""
        dst.flags &= ~PG_locked
        put_page(dst)
        if dst._refcount or dst.flags & PG_private or dst.mapping is not None:
            self.result.check_failures.append(
                CheckFailure(
                    src.pfn,
                    "failed_strategy_left_state",
                    f"{strategy.name} returned {rc.label} but left {dst!r} in use",
                )
            )
        else:
            self.memory.free_page(dst)

    def migrate_folio_move(
        self,
        strategy: MigrateStrategy,
        stats: AopsStats,
        mapping: AddressSpace | SwapCache | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        """``move_to_new_folio``, then finish: PTEs to the new page, locks dropped, the old
        frame freed and counted — or both pages put back as they were."""
        mc = self.mc
        check = PageCheck(mc.frames, src, dst) if self.checks else None
        vm = mc.vmstat
        rebound, written = vm.nr_rebound, vm.nr_written_back
        requests = self.machine.io.write_requests
        rc = self.move_to_new_folio(strategy, stats, mapping, dst, src, mode)
        wrote_back = vm.nr_written_back != written
        if wrote_back:  # counted whether or not this attempt moves the page (writeout())
            self.account_writeback(stats, mapping, src, requests)
        if rc:
            self.migrate_folio_undo_src(src)
            self.migrate_folio_undo_dst(src, dst, strategy, rc)
            return rc
        if check is not None:
            self.result.check_failures.extend(check.verify(mc.frames, dst, wrote_back))
        if src._mapcount or dst.mapping is not mapping:  # anonymous: PTEs follow the page
            remove_migration_ptes(src, dst)
        dst.flags = (dst.flags & ~PG_locked) | PG_lru
        dst._refcount -= 1  # the allocation reference: the page cache / PTEs hold it now
        unlock_page(src)
        src._refcount -= 1  # put_page: the isolation reference was the last one
        if src._refcount:
            raise AssertionError(f"{strategy.name} left references on the old page {src!r}")
        self.memory.free_page(src)
        self.moved[src.pfn] = True
        stats.migrated += 1
        stats.rebound += vm.nr_rebound - rebound
        vm.pgmigrate_success += 1
        if self.hooks.wants_page_events:
            mc.flush_copies()
            self.hooks.on_page_migrated(mapping, src.pfn, dst.pfn, strategy.name)
        return Errno.OK

    def account_writeback(
        self, stats: AopsStats, mapping: AddressSpace | SwapCache | None, src: Page, requests: int
    ) -> None:
        """The strategy wrote ``src`` back so that it could move: one page, its requests."""
        stats.written_back += 1
        issued = self.machine.io.write_requests - requests
        stats.write_requests += issued
        if self.hooks.wants_writeback_events:
            self.hooks.on_writeback(mapping, src.pfn, issued)

    def migrate_folio(self, src: Page, mode: MigrateMode, force: bool = True) -> Errno:
        """One attempt on one folio: isolate, unmap, move — or put it back."""
        mapping = src.mapping
        cached = self._strategies.get(id(mapping))
        if cached is None or src.flags & PG_swapcache:
            mapping, strategy, stats = self.strategy_for(src)
        else:
            strategy, stats = cached
        isolate_folio(src)
        rc, dst = self.migrate_folio_unmap(src, mode, force)
        if rc:
            putback_folio(src)
            return rc
        assert dst is not None
        return self.migrate_folio_move(strategy, stats, mapping, dst, src, mode)

    # -- passes ---------------------------------------------------------------------------
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
        self.mc.defer_copies = not self.checks and tracker() is None
        batched = (
            self.batching
            and tracker() is None
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
            for start, end, fast in pieces(mover.eligible(pfns)):
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


def isolate_folio(src: Page) -> None:
    """``folio_isolate_lru``: the migration's own reference, off the LRU."""
    src._refcount += 1
    src.flags &= ~PG_lru


def putback_folio(src: Page) -> None:
    """``folio_putback_lru``: back on the LRU, the isolation reference dropped."""
    src.flags |= PG_lru
    put_page(src)


def try_split_folio(machine: Machine, head: Page) -> list[Page]:
    """``split_folio`` of an anonymous huge page (mm/huge_memory.c ``__split_huge_page``):
    every subpage becomes an order-0 page with the head's flags, its own index, its own PTE
    (one mapping and one reference each), in the same frame — nothing is copied."""
    mm = machine.memory.pages
    nr = folio_nr_pages(head)
    pfns = np.arange(head.pfn, head.pfn + nr, dtype=np.int64)
    flags = int(head.flags) & ~(PG_head | PG_tail)
    mapping, index, mapcount = head.mapping, head.index, head._mapcount
    head.order = 0
    mm.flags[pfns] = flags
    mm.index[pfns] = index + np.arange(nr)
    mm.mapping_id[pfns] = mm.mapping_index(mapping)
    mm.mapcount[pfns] = mapcount
    mm.refcount[pfns] = head._refcount
    return [Page(mm, int(pfn)) for pfn in pfns]


def try_to_migrate(src: Page) -> None:
    """Replace the PTEs of ``src`` (every subpage of a huge page) by migration entries,
    dropping the mappings' references."""
    vma = src.mapping
    if src._mapcount and isinstance(vma, AnonVma):
        for i in range(folio_nr_pages(src)):
            vma.ptes[src.index + i] = ~(src.pfn + i)  # a migration entry: where it was
        src._refcount -= src._mapcount
        src._mapcount = 0


def remove_migration_ptes(src: Page, dst: Page) -> None:
    """Turn migration entries back into PTEs, to ``dst`` on success or ``src`` on failure.
    An mlocked page stays mlocked on its new frame (VM_LOCKED vma)."""
    vma = src.mapping if isinstance(src.mapping, AnonVma) else dst.mapping
    if not isinstance(vma, AnonVma):
        return
    index = src.index if dst == src else dst.index
    if vma.ptes.get(index) != ~src.pfn:
        return
    for i in range(folio_nr_pages(src)):
        vma.ptes[index + i] = dst.pfn + i
    dst._mapcount += 1
    dst._refcount += 1
    if dst != src and src.flags & PG_mlocked:
        src.flags &= ~PG_mlocked
        dst.flags |= PG_mlocked
