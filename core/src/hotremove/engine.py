"""Memory hot-remove: mm/memory_hotplug.c's ``offline_pages`` over mm/migrate.c's flow.

Step names follow the kernel so a reader can find each one:

``offline_pages`` → ``start_isolate_page_range`` (fails on unmovable pages) → repeat
{``scan_movable_pages`` → ``do_migrate_range`` → ``migrate_pages``} → ``test_pages_isolated``
→ ``__offline_isolated_pages``; on failure ``undo_isolate_page_range``.

``migrate_pages`` runs passes over the isolated pages; each page goes through
``migrate_folio_unmap`` (lock, wait for writeback, unmap) and ``migrate_folio_move``
(``move_to_new_folio`` → the address_space's strategy, then remap and release). The strategy
is asked for once per address_space through the ``hotremove_migrate_strategy`` hook and then
called directly: a hook dispatch per page would dominate the cost. Runs of ordinary pages
whose strategy is one of the core's move together on arrays (:mod:`hotremove.migrate_batch`,
tested to leave exactly the machine the per-page path leaves).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from hotremove.checks import CheckFailure, PageCheck, check_machine
from hotremove.classify import CLASSES, classify_frames
from hotremove.errors import HotremoveError
from hotremove.faults import RaisingStrategy, eio_injector
from hotremove.hooks import Hooks
from hotremove.migrate import MIGRATE_FOLIO, MigrateControl, MigrateStrategy
from hotremove.migrate_batch import BatchMover, pieces
from hotremove.model.address_space import AddressSpace, AnonVma, SwapCache
from hotremove.model.buffer_head import BH_Lock, buffer_ring, unlock_buffer
from hotremove.model.locks import running, tracker
from hotremove.model.machine import Machine
from hotremove.model.memory import ISOLATED, OFFLINE, ONLINE
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    PG_UNMOVABLE,
    Page,
    PageArray,
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
from hotremove.scenario import FaultsConfig

log = structlog.get_logger("hotremove.engine")

NR_MAX_MIGRATE_PAGES_RETRY = 10
NR_MAX_BATCHED_MIGRATION = 512  # HPAGE_PMD_NR
DEFAULT_MAX_ROUNDS = 3

ANON = "anon"  # the report's a_ops label for anonymous memory
SWAP = "swap_aops"  # anonymous pages in the swap cache


@dataclass
class AopsStats:
    """One row of the per-a_ops table."""

    plugin: str
    strategy: str
    pages: int = 0
    migrated: int = 0
    rebound: int = 0
    written_back: int = 0
    write_requests: int = 0
    failed: int = 0


@dataclass
class OfflineResult:
    """What ``offline_pages`` did; :mod:`hotremove.report` turns it into the user's report."""

    blocks: list[int]
    mode: MigrateMode
    policy: str
    pages_in_region: int = 0
    isolated_free: int = 0
    migrated: int = 0
    rebound: int = 0
    written_back: int = 0
    passes: int = 0
    rounds: int = 0
    offlined: bool = False
    failed: list[dict[str, object]] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    per_aops: dict[str, AopsStats] = field(default_factory=dict)
    check_failures: list[CheckFailure] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: page class → {"pages", "migrated", "failed"} (see :mod:`hotremove.classify`)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: why the offline did not complete ("" when it did), as offline_pages would log it
    reason: str = ""
    #: pages moved by the batched path (:mod:`hotremove.migrate_batch`), part of ``migrated``
    batched: int = 0


class Interrupted(Exception):
    """The run was asked to stop (a signal): back off at the next batch boundary."""


#: Errors after which another round cannot help: stop and roll back.
FATAL = {Errno.ENOMEM, Errno.EIO, Errno.EPLUGIN}


class OfflineError(HotremoveError):
    """The request itself is invalid (-EINVAL): nonexistent or already offline block."""


ProgressFn = Callable[[int], None]


class Offliner:
    """One ``offline_pages`` call: state shared by its steps."""

    def __init__(
        self,
        machine: Machine,
        hooks: Hooks,
        blocks: list[int],
        mode: MigrateMode,
        policy: str,
        checks: bool,
        max_rounds: int,
        progress: ProgressFn | None,
        faults: FaultsConfig | None = None,
        should_stop: Callable[[], bool] | None = None,
        fault_seed: int = 0,
        batching: bool = True,
    ) -> None:
        self.machine = machine
        self.batching = batching
        self.faults = faults or FaultsConfig()
        self.fault_seed = fault_seed
        self.should_stop = should_stop
        self._alloc_budget = self.faults.enomem_after
        self.memory = machine.memory
        self.hooks = hooks
        self.blocks = sorted(set(blocks))
        #: every frame of the blocks being offlined, in order
        self.region = np.concatenate(
            [
                np.arange(machine.memory.blocks[b].start_pfn, machine.memory.blocks[b].end_pfn)
                for b in self.blocks
            ]
        )
        self.mode = mode
        self.policy = policy
        self.checks = checks
        self.max_rounds = max_rounds
        self.progress = progress
        self.mc = MigrateControl(
            frames=machine.memory.frames,
            clock=machine.clock,
            vmstat=machine.vmstat,
            copy_seconds=machine.preset.copy_seconds(4096),
        )
        self.result = OfflineResult(self.blocks, mode, policy)
        self._strategies: dict[int, tuple[MigrateStrategy, AopsStats]] = {}
        self._anon = AopsStats(plugin="core", strategy=MIGRATE_FOLIO.name)
        self._swap = AopsStats(plugin="core", strategy=MIGRATE_FOLIO.name)
        self._moved = np.zeros(machine.memory.nr_pages, bool)  # frames moved out
        self.mover = BatchMover(self.memory, self.mc, self._moved, self.result)
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
                return self.machine.swap_cache, MIGRATE_FOLIO, self._swap
            return None, MIGRATE_FOLIO, self._anon
        cached = self._strategies.get(id(mapping))
        if cached is None:
            strategy, plugin = self.hooks.migrate_strategy(mapping, self.policy)
            if plugin == self.faults.plugin_raises:
                strategy = RaisingStrategy(strategy, plugin)
            name = mapping.a_ops.name
            stats = self.result.per_aops.get(name)
            if stats is None:
                stats = self.result.per_aops[name] = AopsStats(plugin, strategy.name)
            cached = self._strategies[id(mapping)] = (strategy, stats)
            self.mover.learn(mapping, strategy, stats)
        return mapping, cached[0], cached[1]

    # -- isolation ------------------------------------------------------------------------
    def start_isolate_page_range(self) -> bool:
        """Switch the blocks to MIGRATE_ISOLATE; fail (-EBUSY) if a page can never move."""
        memory = self.memory
        for b in self.blocks:
            memory.set_block_state(b, ISOLATED)
        region = self.region
        mm = memory.pages
        unmovable = region[(mm.refcount[region] != 0) & (mm.flags[region] & PG_UNMOVABLE != 0)]
        for pfn in unmovable.tolist():
            self.result.failed.append(
                {"pfn": pfn, "reason": "unmovable", "errno": Errno.EBUSY.label}
            )
        if len(unmovable):
            log.info("isolation_failed", unmovable=len(unmovable), first_pfn=int(unmovable[0]))
            self.undo_isolate_page_range()
            return False
        self.result.isolated_free = int(self.memory.free_map[region].sum())
        return True

    def undo_isolate_page_range(self) -> None:
        for b in self.blocks:
            self.memory.set_block_state(b, ONLINE)

    def scan_movable_pages(self) -> PageArray:
        region = self.region
        mm = self.memory.pages
        return PageArray(mm, region[mm.refcount[region] != 0])

    def test_pages_isolated(self) -> bool:
        return bool(self.memory.free_map[self.region].all())

    def offline_isolated_pages(self) -> None:
        """``__offline_isolated_pages``: the range leaves the allocator for good."""
        for b in self.blocks:
            self.memory.set_block_state(b, OFFLINE)

    # -- one page -------------------------------------------------------------------------
    def migrate_folio_unmap(self, src: Page, mode: MigrateMode) -> tuple[Errno, Page | None]:
        """Lock src, deal with writeback, get a destination, unmap. On error nothing held."""
        if not trylock_page(src):
            if mode is MigrateMode.ASYNC:
                return Errno.EAGAIN, None
            lock_page(src)
        if src.flags & PG_writeback:
            if mode is not MigrateMode.SYNC:
                unlock_page(src)
                return Errno.EBUSY, None
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

    def strategy_raised(
        self, src: Page, dst: Page, locked_before: set[int], exc: Exception, plugin: str
    ) -> None:
        """A strategy raised: release what it left locked on ``src`` (buffers it locked,
        not ones another party holds), so the page is consistent where it was."""
        if src.flags & PG_private:
            for bh in buffer_ring(src.private):
                if bh.b_state & BH_Lock and bh not in locked_before:
                    unlock_buffer(bh)
        self.plugin_errors.append(f"plugin {plugin!r} raised {type(exc).__name__}: {exc}")
        log.warning("strategy_raised", plugin=plugin, pfn=src.pfn, error=str(exc))

    def unmap_and_move(self, src: Page, mode: MigrateMode) -> Errno:
        """Isolate one page, move it, release the old frame; or put everything back."""
        mapping = src.mapping
        cached = self._strategies.get(id(mapping))
        if cached is None or src.flags & PG_swapcache:
            mapping, strategy, stats = self.strategy_for(src)
        else:
            strategy, stats = cached
        # isolate_lru_page: the migration's own reference
        src._refcount += 1
        src.flags &= ~PG_lru
        rc, dst = self.migrate_folio_unmap(src, mode)
        if rc:
            src.flags |= PG_lru
            put_page(src)
            return rc
        assert dst is not None
        mc = self.mc
        check = PageCheck(mc.frames, src, dst) if self.checks else None
        vm = mc.vmstat
        rebound, written = vm.nr_rebound, vm.nr_written_back
        requests = self.machine.io.write_requests
        try:
            rc = strategy.migrate_folio(mc, mapping, dst, src, mode)
        except Exception as exc:  # a plugin's bug must not leave locks held or lose data
            locked = {
                bh
                for bh in (buffer_ring(src.private) if src.flags & PG_private else ())
                if bh in self.machine.waiters
            }
            self.strategy_raised(src, dst, locked, exc, stats.plugin)
            rc = Errno.EPLUGIN
        if rc:
            remove_migration_ptes(src, src)
            unlock_page(src)
            src.flags |= PG_lru
            put_page(src)
            dst.flags &= ~PG_locked
            put_page(dst)
            if dst._refcount or dst.flags & PG_private or dst.mapping is not None:
                # the seed's radixfail: "if (PagePrivate(newpage)) BUG();" — the strategy
                # failed after handing state to the new page; freeing it would corrupt memory
                self.result.check_failures.append(
                    CheckFailure(
                        src.pfn,
                        "failed_strategy_left_state",
                        f"{strategy.name} returned {rc.label} but left {dst!r} in use",
                    )
                )
            else:
                self.memory.free_page(dst)
            return rc
        wrote_back = vm.nr_written_back != written
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
        self._moved[src.pfn] = True
        stats.migrated += 1
        stats.rebound += vm.nr_rebound - rebound
        if wrote_back:
            stats.written_back += 1
            issued = self.machine.io.write_requests - requests
            stats.write_requests += issued
            if self.hooks.wants_writeback_events:
                self.hooks.on_writeback(mapping, src.pfn, issued)
        vm.pgmigrate_success += 1
        if self.hooks.wants_page_events:
            mc.flush_copies()
            self.hooks.on_page_migrated(mapping, src.pfn, dst.pfn, strategy.name)
        return Errno.OK

    # -- passes ---------------------------------------------------------------------------
    def migrate_pages(self, pages: Sequence[Page], mode: MigrateMode) -> dict[int, Errno]:
        """Up to NR_MAX_MIGRATE_PAGES_RETRY passes, the first in ``mode`` and the rest in
        SYNC; returns the pages that did not move with their last error. Each pass goes
        through the pages in batches of NR_MAX_BATCHED_MIGRATION (``migrate_pages_batch``)."""
        failed: dict[int, Errno] = {}
        todo: Sequence[Page] = pages
        for pass_idx in range(NR_MAX_MIGRATE_PAGES_RETRY):
            if not todo:
                break
            mode = mode if pass_idx == 0 else MigrateMode.SYNC
            self.result.passes += 1
            retry: list[Page] = []
            moved = 0
            for start in range(0, len(todo), NR_MAX_BATCHED_MIGRATION):
                batch = todo[start : start + NR_MAX_BATCHED_MIGRATION]
                n, enomem = self.migrate_pages_batch(batch, mode, retry, failed)
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
                return self.one_by_one(batch, mode, retry, failed)
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
                    n, enomem = self.one_by_one(rest, mode, retry, failed)
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
    ) -> tuple[int, bool]:
        """The per-page path: ``migrate_folio_unmap`` + ``migrate_folio_move`` for each
        page, checking for a signal at every page boundary."""
        moved = 0
        unmap_and_move = self.unmap_and_move
        counts = self.result.retries
        should_stop = self.should_stop
        try:
            for page in pages:
                if should_stop is not None and should_stop():  # signal_pending()
                    raise Interrupted
                if not page._refcount:  # freed under us (truncated): nothing to move
                    continue
                rc = unmap_and_move(page, mode)
                if rc is Errno.OK:
                    moved += 1
                elif rc is Errno.EAGAIN:
                    retry.append(page)
                    counts[rc.label] += 1
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
        dropped) and the plugins' daemons (jbd2 commit)."""
        self.machine.run_daemons()
        self.hooks.background_work(self.machine, "pass")

    def do_migrate_range(self, mode: MigrateMode) -> dict[int, Errno]:
        return self.migrate_pages(self.scan_movable_pages(), mode)

    def classify_region(self) -> tuple[np.ndarray, np.ndarray]:
        """Every head page or free frame of the range, and its class (before anything
        moves)."""
        region = self.region
        heads = region[self.memory.pages.flags[region] & PG_tail == 0]
        return heads, classify_frames(self.machine, heads)

    def offline_pages(self) -> OfflineResult:
        start = time.perf_counter()
        result = self.result
        result.pages_in_region = len(self.region)
        classes = self.classify_region()
        self.count_pages_per_strategy()  # also resolves each mapping's strategy once
        failed: dict[int, Errno] = {}
        if self.start_isolate_page_range():
            devices = [sb.s_bdev for sb in self.machine.superblocks]
            inject = eio_injector(self.faults.writeback_eio, self.fault_seed)
            for bdev in devices:
                bdev.fault = inject
            try:
                for rnd in range(1, self.max_rounds + 1):
                    result.rounds = rnd
                    mode = self.mode if rnd == 1 else MigrateMode.SYNC
                    failed = self.do_migrate_range(mode)
                    if not failed or FATAL & set(failed.values()):
                        break
                    self.background_work()  # offline_pages rescans after a cond_resched()
            except Interrupted:
                self.mc.flush_copies()
                failed = {p.pfn: Errno.EINTR for p in self.scan_movable_pages()}
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
        result.rebound = sum(s.rebound for s in result.per_aops.values())
        result.written_back = sum(s.written_back for s in result.per_aops.values())
        for label, stats in ((ANON, self._anon), (SWAP, self._swap)):
            if stats.pages:
                result.per_aops[label] = stats
        if self.checks:
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

    def record_failures(self, failed: dict[int, Errno]) -> None:
        """Pages that never moved, with the kernel error name of their last attempt."""
        result = self.result
        for pfn, rc in sorted(failed.items()):
            reason = "busy" if rc is Errno.EAGAIN else rc.label
            if rc is Errno.EPLUGIN and self.plugin_errors:
                reason = self.plugin_errors[-1]
            result.failed.append({"pfn": pfn, "reason": reason, "errno": rc.label})
            self.strategy_for(self.memory.pages[pfn])[2].failed += 1
            self.machine.vmstat.pgmigrate_fail += 1
        reasons = Counter(f["reason"] for f in result.failed)
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        if Errno.EINTR in failed.values():
            result.reason = f"signal backoff (-EINTR): interrupted, rolled back: {summary}"
        elif Errno.ENOMEM in failed.values():
            result.reason = f"no memory to migrate to (-ENOMEM): {summary}"
        elif Errno.EIO in failed.values():
            result.reason = f"I/O error while writing back (-EIO): {summary}"
        elif Errno.EPLUGIN in failed.values():
            result.reason = f"a migration strategy raised: {summary}"
        else:
            result.reason = f"gave up after {result.rounds} rounds of migrate_pages: {summary}"

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
            self.strategy_for(pages[i])[2].pages += n

    def count_classes(self, classes: tuple[np.ndarray, np.ndarray]) -> None:
        pfns, codes = classes
        failed = np.isin(pfns, [f["pfn"] for f in self.result.failed])
        moved = self._moved[pfns]
        table: dict[str, dict[str, int]] = {}
        for code in np.unique(codes).tolist():
            mine = codes == code
            table[CLASSES[code]] = {
                "pages": int(mine.sum()),
                "migrated": int(moved[mine].sum()),
                "failed": int(failed[mine].sum()),
            }
        self.result.classes = dict(sorted(table.items()))


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


def offline(
    machine: Machine,
    hooks: Hooks,
    blocks: list[int],
    *,
    mode: MigrateMode = MigrateMode.SYNC,
    policy: str = "auto",
    checks: bool = True,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    progress: ProgressFn | None = None,
    faults: FaultsConfig | None = None,
    fault_seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    batching: bool = True,
) -> OfflineResult:
    """Offline memory ``blocks`` of ``machine``: move every in-use page out, or roll back.
    ``batching=False`` sends every page through the per-page path (the reference the
    batched path of :mod:`hotremove.migrate_batch` is tested against).
    ``should_stop`` is polled at batch boundaries (a pending signal: -EINTR, rolled back)."""
    nr_blocks = len(machine.memory.blocks)
    for b in blocks:
        if not 0 <= b < nr_blocks:
            raise OfflineError(
                f"remove.blocks: block {b} does not exist (memory has blocks 0-{nr_blocks - 1})"
            )
        if machine.memory.block_state[b] != ONLINE:
            raise OfflineError(f"remove.blocks: block {b} is {machine.memory.block_state[b]}")
    offliner = Offliner(
        machine,
        hooks,
        blocks,
        mode,
        policy,
        checks,
        max_rounds,
        progress,
        faults,
        should_stop,
        fault_seed,
        batching,
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


__all__ = ["ANON", "SWAP", "AopsStats", "OfflineError", "OfflineResult", "offline"]
