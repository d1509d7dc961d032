"""The steps of one folio's migration (mm/migrate.c), the half of :class:`Migrator` that
works on a single page:

* ``migrate_folio_unmap`` — lock the source (trylock in ASYNC), refuse or wait for writeback,
  get a destination (``alloc_migration_target``: -ENOMEM when none), lock it, and replace the
  source's PTEs by migration entries (``try_to_migrate``);
* ``move_to_new_folio`` — the address_space's ``migrate_folio`` (the strategy a plugin gave
  for it, or the core's ``migrate_folio`` for anonymous memory); a plugin that raises is
  contained here and its leftovers released;
* ``migrate_folio_move`` — on success remove the migration PTEs towards the destination,
  unlock both and free the source; on failure ``migrate_folio_undo_src`` /
  ``migrate_folio_undo_dst`` put everything back where it was (PTEs, PG_lru, references).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from hotremove.mm.folio import (
    isolate_folio,
    putback_folio,
    remove_migration_ptes,
    try_to_migrate,
)
from hotremove.mm.migrate import MigrateControl, MigrateStrategy
from hotremove.mm.result import AopsStats, OfflineResult
from hotremove.model.address_space import AddressSpace, SwapCache
from hotremove.model.buffer_head import BH_Lock, buffer_ring, unlock_buffer
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    Page,
    PG_anon,
    PG_locked,
    PG_lru,
    PG_private,
    PG_swapcache,
    PG_uptodate,
    PG_writeback,
    lock_page,
    put_page,
    trylock_page,
    unlock_page,
)
from hotremove.sim.checks import CheckFailure, PageCheck

if TYPE_CHECKING:
    import numpy as np

    from hotremove.hooks import Hooks
    from hotremove.model.machine import Machine
    from hotremove.model.memory import PhysicalMemory

log = structlog.get_logger("hotremove.mm")


class FolioSteps:
    """``migrate_folio_unmap`` → ``move_to_new_folio`` → ``migrate_folio_move`` for one page
    (mixed into :class:`~hotremove.mm.migrate_pages.Migrator`, whose state it uses)."""

    machine: Machine
    memory: PhysicalMemory
    hooks: Hooks
    result: OfflineResult
    checks: bool
    mc: MigrateControl
    moved: np.ndarray
    plugin_errors: list[str]
    _alloc_budget: int | None
    _strategies: dict[int, tuple[MigrateStrategy, AopsStats]]

    def strategy_for(
        self, page: Page
    ) -> tuple[AddressSpace | SwapCache | None, MigrateStrategy, AopsStats]:
        raise NotImplementedError  # Migrator's

    def migrate_folio_unmap(
        self, src: Page, mode: MigrateMode, force: bool = True
    ) -> tuple[Errno, Page | None]:
        """Lock src, deal with writeback, get a destination, unmap. On error nothing held.
        ``force`` is v6.1's ``pass > 2``: before it, a contended page lock or writeback in
        flight is -EAGAIN instead of a wait (``__unmap_and_move``)."""
        if not trylock_page(src):
            # SYNC_LIGHT does not wait for a !uptodate page: a read is likely in flight (v6.5,
            # "migrate_pages: Avoid blocking for IO in MIGRATE_SYNC_LIGHT"; before, it waited)
            if (
                mode is MigrateMode.ASYNC
                or not force
                or (
                    mode is MigrateMode.SYNC_LIGHT
                    and self.machine.kernel.sync_light_skips_io
                    and not src.flags & PG_uptodate
                )
            ):
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
        if not src.flags & PG_anon:  # move_to_new_folio: "src->mapping = NULL" (a file page)
            src.mapping = None
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
