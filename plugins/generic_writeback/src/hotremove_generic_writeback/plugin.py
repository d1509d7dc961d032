"""generic_writeback: the fallback for every mapping no other plugin migrates.

mm/migrate.c's ``fallback_migrate_folio`` as the seed and the v6.7-era kernel did it: a dirty
page cannot move with its buffers, so in ``sync`` mode it is written out synchronously (each
run of adjacent dirty blocks one request through the image's block device), its buffers are
dropped (``try_to_free_buffers``) and the now clean page moves by plain copy. In ``async`` and
``sync_light`` a dirty page is ``-EBUSY`` (no I/O allowed). A page whose buffers cannot be
freed (locked, or held by someone) is ``-EAGAIN`` in sync, ``-EBUSY`` otherwise.

Deliberate difference from the kernel's v6.7 ``writeout()``: the kernel returns ``-EAGAIN``
after starting the write and migrates the page on a later pass; here the write completes
within the attempt (the seed's behaviour), which costs the same I/O in fewer passes.
Current kernels (≈v6.16+) no longer write at all and return ``-EBUSY`` for dirty pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hotremove import hookimpl
from hotremove.migrate import MigrateControl, MigrateStrategy, migrate_folio
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import try_to_free_buffers
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_dirty, PG_private
from hotremove.writeback import writeout


@dataclass(frozen=True)
class FallbackMigrateFolio:
    """``fallback_migrate_folio`` with the seed's synchronous writeout."""

    name: str = "fallback_migrate_folio"
    rebinds: bool = False

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
            if mode is not MigrateMode.SYNC:
                return Errno.EBUSY
            try:
                writeout(mc.frames, mapping, src)
            except OSError:  # the page stays dirty with its buffers: nothing is lost
                return Errno.EIO
            mc.vmstat.nr_written_back += 1
        if src.flags & PG_private:
            if not try_to_free_buffers(src):
                return Errno.EAGAIN if mode is MigrateMode.SYNC else Errno.EBUSY
            mc.vmstat.nr_buffers_freed += 1
        return migrate_folio(mc, mapping, dst, src, mode)


FALLBACK = FallbackMigrateFolio()


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "*",
        aops=[],
        description="writeback fallback for every unclaimed mapping",
        policies=["writeback"],
    )


@hookimpl(trylast=True)
def hotremove_migrate_strategy(mapping: AddressSpace, policy: str) -> MigrateStrategy:
    return FALLBACK
