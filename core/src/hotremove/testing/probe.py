"""Watching strategies at work: every ``migrate_folio`` call of an engine run, with the I/O it
issued, the sleeping functions it called and the contract it kept or broke.

The contract (see :mod:`hotremove.mm.migrate`): a strategy that says ``rebinds`` moves the page's
own buffer_heads to the new page — same buffers, same disk blocks, same state bits — without
I/O; ``ASYNC`` never sleeps, ``SYNC_LIGHT`` never waits for I/O; on an error nothing observable
has changed (the old page is still cached with its buffers, its bytes, its locks). On success
the page cache holds the new page with the old bytes and flags, and every buffer maps the
block the file's block map gives. Each broken rule becomes one line in
:attr:`StrategyCall.problems`, naming the strategy, the rule and the page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hotremove.model.buffer_head import BH, BH_Lock, BufferHead, buffer_ring
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    PAGE_SIZE,
    PG,
    Page,
    PG_dirty,
    PG_mappedtodisk,
    PG_private,
    PG_uptodate,
)

if TYPE_CHECKING:
    from hotremove.hooks import Hooks
    from hotremove.mm.migrate import MigrateControl, MigrateStrategy
    from hotremove.model.address_space import AddressSpace
    from hotremove.model.machine import Machine

_MISSING = object()
#: Flags a migration must carry from the old page to the new one (PG_dirty: unless written).
KEPT_FLAGS = PG_uptodate | PG_mappedtodisk


#: The rules the probe checks, by the name a :class:`Problem` carries.
RULES = {
    "no_writeback": "a strategy with rebinds=True issues no I/O",
    "async_sleep": "ASYNC never calls a sleeping function",
    "sync_light_io": "SYNC_LIGHT never waits for I/O",
    "raised": "a strategy returns an Errno, it never raises",
    "unchanged_on_error": "on an error the old page, its buffers and bytes are unchanged",
    "page_cache": "on success the page cache holds the new page",
    "data": "the new page holds the old page's bytes",
    "flags": "PG_uptodate, PG_mappedtodisk and (unless written) PG_dirty survive",
    "rebinding": "a rebinding strategy moves the page's own buffer_heads",
    "bh_page": "every buffer of the new page points at it",
    "bh_lock": "buffer locks are balanced",
    "under_io": "a buffer locked by I/O is waited for, never moved under the I/O",
    "block_map": "every buffer maps the block the file's block map gives",
    "bh_state": "buffer state bits (BH_Dirty ...) are unchanged unless the page was written",
    "b_count": "buffer references (b_count) balance",
}


@dataclass(frozen=True)
class Problem:
    """One broken rule of one strategy call."""

    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class StrategyCall:
    """One ``strategy.migrate_folio`` call."""

    a_ops: str
    strategy: str
    rebinds: bool
    mode: MigrateMode
    pfn: int  # the old page
    index: int
    rc: Errno
    write_requests: int  # block writes issued during the call
    journal_requests: int
    written_back: int  # vmstat.nr_written_back delta (the strategy says it wrote the page)
    sleeps: tuple[str, ...]  # sleeping functions called (might_sleep)
    had_buffers: bool
    problems: tuple[Problem, ...]


@dataclass
class _Before:
    """What the old page looked like when the call started."""

    flags: int
    head: BufferHead | None
    buffers: list[tuple[BufferHead, int, int, int, int]]  # bh, blocknr, state, offset, count
    frames: np.ndarray
    io: set[BufferHead]  # buffers whose lock belonged to I/O in flight


class StrategyProbe:
    """Wraps every strategy the facade hands out while installed (:meth:`installed`).

    ``inflight`` holds buffers whose lock belongs to simulated I/O: a strategy that moves one
    of them without waiting for it moved a buffer under I/O.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.calls: list[StrategyCall] = []
        self.inflight: set[BufferHead] = set()
        self._sleeps: list[str] = []

    @contextlib.contextmanager
    def installed(self, hooks: Hooks) -> Iterator[StrategyProbe]:
        task = self.machine.task
        saved_lookup = hooks.__dict__.get("migrate_strategy", _MISSING)
        saved_sleep = task.__dict__.get("might_sleep", _MISSING)
        lookup = hooks.migrate_strategy
        might_sleep = task.might_sleep

        def probed_lookup(
            mapping: AddressSpace, policy: str, kernel: Any = None
        ) -> tuple[Any, str]:
            strategy, plugin = lookup(mapping, policy, kernel)
            return ProbedStrategy(strategy, self), plugin

        def recording_might_sleep(operation: str, *args: Any, **kwargs: Any) -> None:
            self._sleeps.append(operation)
            might_sleep(operation, *args, **kwargs)

        hooks.migrate_strategy = probed_lookup  # type: ignore[method-assign]
        task.might_sleep = recording_might_sleep  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for obj, name, saved in (
                (hooks, "migrate_strategy", saved_lookup),
                (task, "might_sleep", saved_sleep),
            ):
                if saved is _MISSING:
                    obj.__dict__.pop(name, None)
                else:
                    setattr(obj, name, saved)

    @property
    def problems(self) -> list[Problem]:
        return [p for call in self.calls for p in call.problems]

    def observe(
        self,
        strategy: MigrateStrategy,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        if mapping is None:  # anonymous memory: not a plugin's business
            return strategy.migrate_folio(mc, mapping, dst, src, mode)
        io, vm = self.machine.io, mc.vmstat
        nr = 1 << src.order
        head = src.private if src.flags & PG_private else None
        before = _Before(
            src.flags,
            head,
            [(bh, bh.b_blocknr, bh.b_state, bh.b_offset, bh.b_count) for bh in buffer_ring(head)],
            mc.frames[src.pfn : src.pfn + nr].copy(),
            {bh for bh in buffer_ring(head) if bh in self.inflight},
        )
        writes, journal, wrote = io.write_requests, io.journal_requests, vm.nr_written_back
        del self._sleeps[:]
        raised: Exception | None = None
        try:
            rc = Errno(strategy.migrate_folio(mc, mapping, dst, src, mode))
        except Exception as exc:  # the engine turns it into a failed page; record it first
            raised, rc = exc, Errno(getattr(Errno, "EPLUGIN", Errno.EIO))
        call = StrategyCall(
            a_ops=mapping.a_ops.name,
            strategy=strategy.name,
            rebinds=bool(strategy.rebinds),
            mode=mode,
            pfn=src.pfn,
            index=src.index,
            rc=rc,
            write_requests=io.write_requests - writes,
            journal_requests=io.journal_requests - journal,
            written_back=vm.nr_written_back - wrote,
            sleeps=tuple(self._sleeps),
            had_buffers=bool(before.buffers),
            problems=(),
        )
        if raised is not None:
            problem = Problem(
                "raised",
                f"strategy {strategy.name!r} for {call.a_ops} raised "
                f"{type(raised).__name__}: {raised} migrating {mapping!r} page {src.index}: "
                "a strategy returns an Errno",
            )
            self.calls.append(replace(call, problems=(problem,)))
            raise raised
        problems = _contract_problems(call, before, mc, mapping, dst, src, self.inflight)
        self.calls.append(replace(call, problems=tuple(problems)))
        return rc


class ProbedStrategy:
    """A strategy seen through a probe: same name, same ``rebinds``, same results."""

    def __init__(self, inner: MigrateStrategy, probe: StrategyProbe) -> None:
        self.inner = inner
        self.name = inner.name
        self.rebinds = inner.rebinds
        self._probe = probe

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        return self._probe.observe(self.inner, mc, mapping, dst, src, mode)


def _state(bits: int) -> str:
    return "|".join(str(flag.name) for flag in BH if flag & bits) or "0"


def _contract_problems(
    call: StrategyCall,
    before: _Before,
    mc: MigrateControl,
    mapping: AddressSpace,
    dst: Page,
    src: Page,
    inflight: set[BufferHead],
) -> list[Problem]:
    where = f"{mapping!r} page {call.index} (pfn {call.pfn:#x}, {call.mode.value})"
    who = f"strategy {call.strategy!r} for {call.a_ops}"
    problems: list[Problem] = []

    def add(rule: str, text: str) -> None:
        problems.append(Problem(rule, text))

    if call.rebinds and (call.write_requests or call.journal_requests or call.written_back):
        add(
            "no_writeback",
            f"{who} claims rebinds=True but issued writeback ({call.write_requests} write "
            f"request(s), {call.journal_requests} journal request(s), {call.written_back} page(s) "
            f"written back) migrating {where}: a rebinding strategy moves buffers without I/O",
        )
    if call.mode is MigrateMode.ASYNC and call.sleeps:
        add(
            "async_sleep",
            f"{who} called sleeping function(s) {', '.join(sorted(set(call.sleeps)))}() in ASYNC "
            f"mode migrating {where}: ASYNC may only trylock and must return -EAGAIN instead",
        )
    if call.mode is MigrateMode.SYNC_LIGHT and (call.write_requests or call.journal_requests):
        add("sync_light_io", f"{who} issued I/O in SYNC_LIGHT mode migrating {where}")
    if call.rc is Errno.OK:
        _success_problems(add, call, before, mc, mapping, dst, who, where, inflight)
        return problems
    failed = f"{who} returned {call.rc.label}"
    if mapping.i_pages.get(call.index) != src:
        add("unchanged_on_error", f"{failed} but the page cache lost the old page at {where}")
    if src.flags & PG_private != before.flags & PG_private or src.private != before.head:
        add("unchanged_on_error", f"{failed} but the old page lost its buffers at {where}")
    for bh, blocknr, state, offset, count in before.buffers:
        if bh.b_page != src or bh.b_offset != offset:
            add("unchanged_on_error", f"{failed} but {bh!r} was moved ({where})")
        if bh.b_blocknr != blocknr:
            add("block_map", f"{failed} but {bh!r} changed its block from {blocknr} ({where})")
        if (bh.b_state ^ state) & BH_Lock and not (bh in before.io and bh not in inflight):
            taken = "taken" if bh.b_state & BH_Lock else "dropped"
            add("bh_lock", f"{failed} with the lock of {bh!r} {taken} ({where})")
        if bh.b_count != count:
            add("b_count", f"{failed} and changed b_count of {bh!r} from {count} ({where})")
    nr = 1 << src.order
    if not np.array_equal(mc.frames[src.pfn : src.pfn + nr], before.frames):
        add("unchanged_on_error", f"{failed} but changed the old page's bytes ({where})")
    return problems


def _success_problems(
    add: Callable[[str, str], None],
    call: StrategyCall,
    before: _Before,
    mc: MigrateControl,
    mapping: AddressSpace,
    dst: Page,
    who: str,
    where: str,
    inflight: set[BufferHead],
) -> None:
    nr = 1 << dst.order
    if mapping.i_pages.get(call.index) != dst:
        add("page_cache", f"{who} returned ok but the page cache lacks the new page at {where}")
    new_bytes = mc.frames[dst.pfn : dst.pfn + nr]
    deferred = getattr(mc, "defer_copies", False)  # checks off: copies land at batch end
    if not deferred and not np.array_equal(new_bytes, before.frames):
        bad = int(np.flatnonzero(new_bytes != before.frames)[0])
        add("data", f"{who}: byte {bad} of the new page differs from the old page ({where})")
    wrote = call.write_requests or call.written_back
    lost = (before.flags & KEPT_FLAGS) & ~dst.flags
    if lost:
        add("flags", f"{who} dropped {PG(lost)!r} moving {where}")
    if before.flags & PG_dirty and not dst.flags & PG_dirty and not wrote:
        add("flags", f"{who} lost PG_dirty moving {where} without writing the page")
    now = buffer_ring(dst.private if dst.flags & PG_private else None)
    if call.rebinds and before.buffers and [b[0] for b in before.buffers] != now:
        add(
            "rebinding",
            f"{who} claims rebinds=True but the new page does not carry the old page's "
            f"buffer_heads ({where})",
        )
    inode = mapping.host
    bs = inode.i_sb.s_blocksize
    per_page = PAGE_SIZE // bs
    old = {b[0]: b for b in before.buffers}
    for bh in now:
        if bh.b_page != dst:
            add("bh_page", f"{who}: {bh!r} does not point at the new page ({where})")
        if bh in inflight:
            add(
                "under_io",
                f"{who} moved {bh!r} while I/O held its lock, without waiting "
                f"for the I/O ({where})",
            )
        elif bh.b_state & BH_Lock:
            add("bh_lock", f"{who} left {bh!r} locked ({where})")
        lblk = call.index * per_page + bh.b_offset // bs
        want = inode.block_map[lblk] if lblk < len(inode.block_map) else -1
        if bh.b_blocknr != want:
            add(
                "block_map",
                f"{who} corrupted the block mapping: the buffer at offset {bh.b_offset} maps "
                f"block {bh.b_blocknr}, the file's block map says {want} ({where})",
            )
        prev = old.get(bh)
        if prev is None:
            continue
        _, _, state, _, count = prev
        if (bh.b_state ^ state) & ~BH_Lock and not wrote:
            add(
                "bh_state",
                f"{who} changed the state of the buffer at offset {bh.b_offset} "
                f"({_state(state & ~BH_Lock)} -> {_state(bh.b_state & ~BH_Lock)}) without "
                f"I/O ({where})",
            )
        if bh.b_count != count:
            add(
                "b_count",
                f"{who} changed b_count of {bh!r} from {count}: references must balance ({where})",
            )


__all__ = ["KEPT_FLAGS", "RULES", "ProbedStrategy", "Problem", "StrategyCall", "StrategyProbe"]
