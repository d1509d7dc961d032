"""generic_writeback: the fallback for every mapping no other plugin migrates — per kernel.

It is mm/migrate.c's ``fallback_migrate_folio`` (the seed's ``remap_preparepage`` for
"unsupported" filesystems), the answer whenever the simulated kernel's
``a_ops->migrate_folio`` is NULL. What it does with a **dirty** page is the kernel's
``fallback_dirty`` rule (:mod:`hotremove.kernels`):

==================== ======================================================================
``writeout_sync``    kernel "2004" (``remap_preparepage``): in SYNC the page is written and
                     waited for, its buffers released, and it moves in the same attempt.
``writeout``         Linux 5.10 (``fallback_migrate_page``), 6.1, 6.12 (``writeout()``, since
                     2.6.16; read in mm/migrate.c of v5.10 and v6.7): in
                     SYNC the page is written out and the attempt returns ``-EAGAIN``; a
                     later attempt finds it clean, releases its buffers and moves it. A
                     failed write is recorded (BH_Write_EIO, AS_EIO on the mapping: the next
                     fsync reports it) and the page still moves, clean.
``ebusy``            Linux 7.2: ≥ v6.16 (7ee3647243e5 "migrate: Remove call to ->writepage"):
                     a dirty page is ``-EBUSY`` in every mode; nothing is written (Debian's 7.2
                     binary has the commit's WARN "%ps does not implement migrate_folio";
                     6.12.118's has not).
==================== ======================================================================

In ASYNC and SYNC_LIGHT a dirty page is ``-EBUSY`` in every kernel (no I/O allowed). A clean
page's buffers are released with ``filemap_release_folio`` (2.6: ``try_to_release_page``):
``->release_folio`` when the filesystem journals — jbd2 drops the heads of committed buffers
that were written home (``jbd2_journal_try_to_free_buffers``) — else ``try_to_free_buffers``.
If they cannot be released (locked, dirty, or held by someone): ``-EAGAIN`` in SYNC,
``-EBUSY`` otherwise. Then the page moves by plain copy (``migrate_folio``).

Each write is one request per run of adjacent dirty blocks, through the image's block
device. The simulated ``writeout()`` completes its write within the call (the kernel queues
``->writepage`` and a later pass waits for PG_writeback in ``migrate_folio_unmap``): the same
I/O, the same ``-EAGAIN``, one wait fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hotremove import hookimpl
from hotremove.kernels import FallbackDirty, Kernel
from hotremove.mm.migrate import MigrateControl, MigrateStrategy, declare_fallback, migrate_folio
from hotremove.mm.page_writeback import filemap_release_folio, writeout, writeout_async
from hotremove.model.address_space import AddressSpace
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_dirty, PG_private


@dataclass(frozen=True)
class FallbackMigrateFolio:
    """``fallback_migrate_folio`` with one kernel's rule for dirty pages (``dirty``)."""

    dirty: FallbackDirty = "writeout_sync"
    name: str = "fallback_migrate_folio"
    rebinds: bool = False
    #: where the kernel has this behaviour, since which release (``hotremove kernels``)
    source: str = ""

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        assert mapping is not None  # the engine moves anonymous pages itself
        if src.flags & PG_dirty:
            rc = self.dirty_folio(mc, mapping, src, mode)
            if rc:
                return rc
        if src.flags & PG_private and not self.release(mc, mapping, src):
            return Errno.EAGAIN if mode is MigrateMode.SYNC else Errno.EBUSY
        return migrate_folio(mc, mapping, dst, src, mode)

    def dirty_folio(
        self, mc: MigrateControl, mapping: AddressSpace, src: Page, mode: MigrateMode
    ) -> Errno:
        """A dirty ``src``: write it out where the kernel does (SYNC only); ``OK`` when it may
        go on to move in this attempt."""
        if self.dirty == "ebusy" or mode is not MigrateMode.SYNC:
            return Errno.EBUSY
        if self.dirty == "writeout":  # queued: a failed write is recorded on the mapping
            requests = writeout_async(mc.frames, mapping, src)
        else:
            try:  # the seed waited: a failed write fails the attempt, the page stays dirty
                requests = writeout(mc.frames, mapping, src)
            except OSError:
                return Errno.EIO
        if requests or not src.flags & PG_dirty:
            mc.vmstat.nr_written_back += 1
        # else: every dirty buffer is the running transaction's (BH_JBDDirty): only the
        # journal's commit may write it, and the page stays dirty until then
        if self.dirty == "writeout":
            return Errno.EAGAIN  # writeout(): "this attempt will fail anyway"
        return Errno.OK  # the seed waited for the write, then went on

    @staticmethod
    def release(mc: MigrateControl, mapping: AddressSpace, src: Page) -> bool:
        """``filemap_release_folio``: drop the page's buffers (through the journal)."""
        if not filemap_release_folio(mapping, src):
            return False
        mc.vmstat.nr_buffers_freed += 1
        return True


#: ``Kernel.fallback_dirty`` rule → where that behaviour comes from
SOURCES: dict[FallbackDirty, str] = {
    "writeout_sync": "mm/memhotplug.c remap_preparepage(), 2004 patchset",
    "writeout": "mm/migrate.c writeout(), v2.6.16–v6.15",
    "ebusy": "mm/migrate.c fallback_migrate_folio(), v6.16 (7ee3647243e5)",
}

#: one ``fallback_migrate_folio`` per ``Kernel.fallback_dirty`` rule; each declared to the
#: core (its clean pages whose buffers can be freed move on arrays, hotremove.mm.batch)
FALLBACKS: dict[str, FallbackMigrateFolio] = {
    rule: FallbackMigrateFolio(rule, source=source) for rule, source in SOURCES.items()
}
#: kernels before v6.0 call it ``fallback_migrate_page`` (5.10: the same ``writeout()``)
MIGRATEPAGE_FALLBACK = FallbackMigrateFolio(
    "writeout",
    name="fallback_migrate_page",
    source="mm/migrate.c writeout(), v2.6.16–v6.15",
)
for _fallback in (*FALLBACKS.values(), MIGRATEPAGE_FALLBACK):
    declare_fallback(_fallback)
#: the seed's (kernel "2004"): write, wait, release, copy
FALLBACK = FALLBACKS["writeout_sync"]


def fallback_for(kernel: Kernel) -> FallbackMigrateFolio:
    """``fallback_migrate_folio`` as ``kernel`` has it."""
    if not kernel.folios and kernel.fallback_dirty == "writeout":
        return MIGRATEPAGE_FALLBACK
    return FALLBACKS[kernel.fallback_dirty]


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "*",
        aops=[],
        description="writeback fallback for every unclaimed mapping",
        policies=["writeback"],
    )


@hookimpl(trylast=True)
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy:
    return fallback_for(kernel)
