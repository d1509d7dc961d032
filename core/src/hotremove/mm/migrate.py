"""The migration library: mm/migrate.c's steps, for the engine and for plugin strategies.

A strategy (what a filesystem's ``a_ops->migrate_folio`` points at) composes these functions
exactly as the kernel's callbacks do. Contract shared by every ``*_migrate_folio`` here:
``src`` and ``dst`` are locked by the caller, ``src`` is unmapped and held by one isolation
reference, ``dst`` holds one allocation reference; the return value is
:class:`~hotremove.model.migrate_mode.Errno` (``OK`` or a negative error) and on error nothing
observable has changed (buffers unlocked, ``src`` still in the page cache with its data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from hotremove.model.address_space import AddressSpace, SwapCache
from hotremove.model.buffer_head import (
    BH_Uptodate,
    BufferHead,
    buffer_ring,
    lock_buffer,
    trylock_buffer,
    unlock_buffer,
)
from hotremove.model.cost import SimClock
from hotremove.model.machine import VmStat
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    Page,
    PG_active,
    PG_anon,
    PG_checked,
    PG_dirty,
    PG_mappedtodisk,
    PG_private,
    PG_readahead,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    PG_workingset,
    attach_page_private,
    detach_page_private,
    folio_nr_pages,
)

#: Flags ``folio_migrate_flags`` carries from the old page to the new one (current mm/migrate.c).
#: PG_active and PG_unevictable are *moved* (cleared on src); PG_dirty is moved by
#: ``folio_migrate_mapping`` for page-cache pages. PG_mlocked is not copied here: as in the
#: kernel it is re-established when the migration PTEs are replaced (VM_LOCKED vma).
MIGRATED_FLAGS = (
    PG_referenced
    | PG_uptodate
    | PG_workingset
    | PG_checked
    | PG_mappedtodisk
    | PG_dirty
    | PG_readahead
)


@dataclass
class MigrateControl:
    """What one migration run shares with every strategy call (the kernel reaches these
    through globals: the direct map for copies, the clock, vmstat)."""

    frames: np.ndarray
    clock: SimClock
    vmstat: VmStat
    copy_seconds: float  # simulated CPU time of one 4 KiB copy
    #: MIGRATE_SYNC_LIGHT gives up on a locked buffer that is not uptodate (v6.5+; the
    #: simulated kernel's ``sync_light_skips_io``); before, it waited
    sync_light_skips_io: bool = True
    #: Batch the data copies of a migrate_pages batch (the engine flushes them with one
    #: vectorised copy before anything reads the new frames); off when per-page checks run.
    defer_copies: bool = False
    pending: list[tuple[int, int, int]] = field(default_factory=list)  # (dst, src, nr)

    def flush_copies(self) -> None:
        """Do the deferred copies: one fancy-indexed memcpy for the whole batch."""
        if not self.pending:
            return
        single = [(d, s) for d, s, nr in self.pending if nr == 1]
        if single:
            dsts, srcs = zip(*single, strict=True)
            self.frames[list(dsts)] = self.frames[list(srcs)]
        for d, s, nr in self.pending:
            if nr > 1:
                self.frames[d : d + nr] = self.frames[s : s + nr]
        self.pending.clear()


@runtime_checkable
class MigrateStrategy(Protocol):
    """What a plugin returns for an address_space: its ``a_ops->migrate_folio``.

    ``name`` is the kernel function it models (``buffer_migrate_folio``...); ``rebinds`` says
    it moves buffer_heads to the new page without I/O (the conformance kit holds it to that).
    A strategy may also carry ``source: str`` — where the kernel sets this callback and since
    which release (``hotremove kernels`` prints it; optional, read with :func:`source_of`).
    """

    name: str
    rebinds: bool

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        """Move ``src`` to ``dst``: return ``Errno.OK`` or a negative error (see module doc)."""
        ...


def folio_expected_refs(mapping: AddressSpace | SwapCache | None, src: Page) -> int:
    """References an unmapped, isolated folio has when nobody else uses it
    (``folio_expected_refs``, v6.x): the isolation reference, plus one per page for the page
    (or swap) cache — a large folio is cached ``folio_nr_pages`` times — plus one for
    ->private (buffer_heads)."""
    if mapping is None:
        return 1
    return 1 + folio_nr_pages(src) + (1 if src.flags & PG_private else 0)


def folio_migrate_mapping(
    mapping: AddressSpace | SwapCache | None, dst: Page, src: Page, extra_count: int = 0
) -> Errno:
    """Replace ``src`` by ``dst`` in the page cache, with references frozen: a page someone
    else holds (an extra reference) cannot move now → ``-EAGAIN``. PG_dirty moves here, raw,
    without touching the buffers' own dirty bits."""
    expected = folio_expected_refs(mapping, src) + extra_count
    if src._refcount != expected:
        return Errno.EAGAIN
    flags = src.flags  # read once: the per-page path's cost is attribute access
    key = dst.index = src.index
    dst.mapping = src.mapping
    moved = flags & (PG_anon | PG_swapbacked)
    if mapping is None:  # anonymous, no swap slot: the anon_vma and PTEs follow later
        dst.flags |= moved
        return Errno.OK
    dst._refcount += 1  # the page cache's (or swap cache's) reference
    if flags & PG_swapcache:  # the swap cache is indexed by swap entry (->private)
        key = dst.private = src.private
        moved |= PG_swapcache
    if flags & PG_dirty:
        src.flags = flags & ~PG_dirty
        moved |= PG_dirty
    dst.flags |= moved
    mapping.i_pages[key] = dst
    src._refcount -= 1  # folio_ref_unfreeze(src, expected - 1)
    return Errno.OK


def folio_copy(mc: MigrateControl, dst: Page, src: Page) -> None:
    """Copy the folio's frames (CPU time on the simulated clock). In a batch the copy is
    queued and done by :meth:`MigrateControl.flush_copies` — the old frame stays untouched
    until then, because it is isolated and only freed frames outside the range are reused."""
    nr = 1 << src.order
    mc.clock.cpu_seconds += mc.copy_seconds * nr
    if mc.defer_copies:
        mc.pending.append((dst.pfn, src.pfn, nr))
    elif nr == 1:
        mc.frames[dst.pfn] = mc.frames[src.pfn]
    else:
        mc.frames[dst.pfn : dst.pfn + nr] = mc.frames[src.pfn : src.pfn + nr]


def folio_migrate_flags(dst: Page, src: Page) -> None:
    """Carry the page state over, as mm/migrate.c's ``folio_migrate_flags``."""
    flags = src.flags
    moved = flags & MIGRATED_FLAGS
    if flags & PG_active:
        moved |= PG_active
        flags &= ~PG_active
    elif flags & PG_unevictable:
        moved |= PG_unevictable
        flags &= ~PG_unevictable
    dst.flags |= moved
    src.flags = flags & ~(PG_swapcache | PG_private)
    src.private = None


def __migrate_folio(
    mc: MigrateControl, mapping: AddressSpace | None, dst: Page, src: Page, move_private: bool
) -> Errno:
    rc = folio_migrate_mapping(mapping, dst, src)
    if rc:
        return rc
    if move_private:
        attach_page_private(dst, detach_page_private(src))  # type: ignore[arg-type]
    folio_copy(mc, dst, src)
    folio_migrate_flags(dst, src)
    return Errno.OK


def migrate_folio(
    mc: MigrateControl, mapping: AddressSpace | None, dst: Page, src: Page, mode: MigrateMode
) -> Errno:
    """For pages without private data: anon, swap cache, nobh page cache."""
    return __migrate_folio(mc, mapping, dst, src, move_private=False)


def filemap_migrate_folio(
    mc: MigrateControl, mapping: AddressSpace | None, dst: Page, src: Page, mode: MigrateMode
) -> Errno:
    """For page-cache pages whose ->private is fs data that does not point back at the page."""
    return __migrate_folio(mc, mapping, dst, src, move_private=bool(src.flags & PG_private))


def buffer_migrate_lock_buffers(
    ring: list[BufferHead], mode: MigrateMode, sync_light_skips_io: bool = True
) -> bool:
    """Lock every buffer of the page *before* anything moves, never under a spinlock:
    ASYNC only trylocks; SYNC_LIGHT waits only for an uptodate buffer (a !uptodate locked
    buffer means a read in flight — v6.5, "migrate_pages: Avoid blocking for IO in
    MIGRATE_SYNC_LIGHT"; ``sync_light_skips_io=False``: ≤ v6.4, which waited); SYNC sleeps.
    On failure no buffer stays locked."""
    for i, bh in enumerate(ring):
        if not trylock_buffer(bh):
            if mode is MigrateMode.ASYNC or (
                mode is MigrateMode.SYNC_LIGHT
                and sync_light_skips_io
                and not bh.b_state & BH_Uptodate
            ):
                for other in ring[:i]:
                    unlock_buffer(other)
                return False
            lock_buffer(bh)
    return True


def buffers_busy(ring: list[BufferHead]) -> bool:
    """``_norefs``: someone else (the bh LRU, a lookup, jbd2's journal_head) holds a buffer."""
    return any(bh.b_count for bh in ring)


def __buffer_migrate_folio(
    mc: MigrateControl,
    mapping: AddressSpace,
    dst: Page,
    src: Page,
    mode: MigrateMode,
    check_refs: bool,
) -> Errno:
    """mm/migrate.c's ``__buffer_migrate_folio``: keep the buffers, lock them, move the page
    in the page cache, move ->private, repoint each ``bh->b_page``, copy, unlock. No I/O.

    ``check_refs`` is the ``_norefs`` variant: a buffer with any user (``b_count``) makes the
    page busy (``-EAGAIN``), checked under ``private_lock`` as the kernel does.
    """
    head = src.private if src.flags & PG_private else None
    if not isinstance(head, BufferHead):  # no buffers: a plain move (a folio state goes too)
        return __migrate_folio(mc, mapping, dst, src, move_private=head is not None)
    if src._refcount != folio_expected_refs(mapping, src):
        return Errno.EAGAIN
    ring = buffer_ring(head)
    if not buffer_migrate_lock_buffers(ring, mode, mc.sync_light_skips_io):
        return Errno.EAGAIN
    try:
        if check_refs:
            with mapping.private_lock:
                if buffers_busy(ring):
                    return Errno.EAGAIN
        rc = folio_migrate_mapping(mapping, dst, src)
        if rc:
            return rc
        # folio_attach_private(dst, folio_detach_private(src)): ->private, PG_private and its
        # page reference move together
        dst.private, src.private = head, None
        src.flags &= ~PG_private
        dst.flags |= PG_private
        src._refcount -= 1
        dst._refcount += 1
        for bh in ring:
            bh.b_page = dst  # folio_set_bh(bh, dst, bh_offset(bh)): same offset, new page
        folio_copy(mc, dst, src)
        folio_migrate_flags(dst, src)
        mc.vmstat.nr_rebound += 1
        return Errno.OK
    finally:
        for bh in ring:
            unlock_buffer(bh)


def buffer_migrate_folio(
    mc: MigrateControl, mapping: AddressSpace, dst: Page, src: Page, mode: MigrateMode
) -> Errno:
    """``.migrate_folio`` of ext2/ext4 (and historic ext3 ordered/writeback)."""
    return __buffer_migrate_folio(mc, mapping, dst, src, mode, check_refs=False)


def buffer_migrate_folio_norefs(
    mc: MigrateControl, mapping: AddressSpace, dst: Page, src: Page, mode: MigrateMode
) -> Errno:
    """``.migrate_folio`` of block devices and ext4 data=journal: busy buffers stay put."""
    return __buffer_migrate_folio(mc, mapping, dst, src, mode, check_refs=True)


class FunctionStrategy:
    """A strategy that is one of the functions above, named as the kernel names it. The
    function itself is the ``migrate_folio`` method (no wrapper call per page)."""

    __slots__ = ("migrate_folio", "name", "rebinds", "source")

    def __init__(
        self, name: str, rebinds: bool, func: Callable[..., Errno], source: str = ""
    ) -> None:
        self.name = name
        self.rebinds = rebinds
        self.migrate_folio = func
        self.source = source

    def __repr__(self) -> str:
        return f"<FunctionStrategy {self.name}>"


#: Strategies that are mm/migrate.c's ``fallback_migrate_folio`` (Linux 5.10–7.2; the seed's
#: ``remap_preparepage``), by identity: see :func:`declare_fallback`.
_FALLBACKS: dict[int, MigrateStrategy] = {}


def declare_fallback(strategy: MigrateStrategy) -> MigrateStrategy:
    """Declare ``strategy`` to be ``fallback_migrate_folio`` for **clean** pages: a page
    without PG_dirty has its buffers released with :func:`hotremove.mm.page_writeback.
    filemap_release_folio` (``try_to_release_page`` → fs/buffer.c ``try_to_free_buffers``;
    -EAGAIN in SYNC, -EBUSY otherwise when they cannot go) and is then moved by
    :func:`migrate_folio` (a copy), in every mode — nothing else. The engine then moves such
    pages whose buffers are free to go on arrays (:mod:`hotremove.mm.batch`); what it does
    with dirty pages stays the strategy's own. The instance is kept (its identity is the key).
    Returns ``strategy``."""
    _FALLBACKS[id(strategy)] = strategy
    return strategy


def is_fallback(strategy: object) -> bool:
    """Whether ``strategy`` was declared with :func:`declare_fallback`."""
    return _FALLBACKS.get(id(strategy)) is strategy


#: v6.0 ("fs: Add aops->migrate_folio") renamed the helpers; a kernel before it names them so
PAGE_NAMES = {
    "migrate_folio": "migrate_page",
    "buffer_migrate_folio": "buffer_migrate_page",
    "buffer_migrate_folio_norefs": "buffer_migrate_page_norefs",
    "fallback_migrate_folio": "fallback_migrate_page",
}


def kernel_name(name: str, folios: bool = True) -> str:
    """``name`` as a kernel spells it: the ``*_folio`` helper, or (``folios=False``, before
    v6.0) its ``*_page`` ancestor."""
    return name if folios else PAGE_NAMES.get(name, name)


def cite(strategy: FunctionStrategy, source: str, *, folios: bool = True) -> FunctionStrategy:
    """``strategy`` with ``source`` (where the kernel sets it, since which release) and, before
    v6.0 (``folios=False``), its ``*_page`` name. The same function runs: the engine treats it
    exactly as ``strategy``."""
    return FunctionStrategy(
        kernel_name(strategy.name, folios), strategy.rebinds, strategy.migrate_folio, source
    )


def source_of(strategy: object) -> str:
    """A strategy's optional ``source`` ("" when it has none)."""
    source = getattr(strategy, "source", "")
    return source if isinstance(source, str) else ""


MIGRATE_FOLIO = FunctionStrategy("migrate_folio", False, migrate_folio)
FILEMAP_MIGRATE_FOLIO = FunctionStrategy("filemap_migrate_folio", False, filemap_migrate_folio)
BUFFER_MIGRATE_FOLIO = FunctionStrategy("buffer_migrate_folio", True, buffer_migrate_folio)
BUFFER_MIGRATE_FOLIO_NOREFS = FunctionStrategy(
    "buffer_migrate_folio_norefs", True, buffer_migrate_folio_norefs
)


__all__ = [
    "BUFFER_MIGRATE_FOLIO",
    "BUFFER_MIGRATE_FOLIO_NOREFS",
    "FILEMAP_MIGRATE_FOLIO",
    "MIGRATED_FLAGS",
    "MIGRATE_FOLIO",
    "FunctionStrategy",
    "MigrateControl",
    "MigrateStrategy",
    "buffer_migrate_folio",
    "buffer_migrate_folio_norefs",
    "buffer_migrate_lock_buffers",
    "buffers_busy",
    "cite",
    "declare_fallback",
    "filemap_migrate_folio",
    "folio_copy",
    "folio_expected_refs",
    "folio_migrate_flags",
    "folio_migrate_mapping",
    "is_fallback",
    "kernel_name",
    "migrate_folio",
    "source_of",
]
