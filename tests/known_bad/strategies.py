"""Deliberately wrong migration strategies, wrong the way real code has been: test subjects
for the lock checker and the interleaving explorer (a plugin module: load it with
``load_plugins(extra=[("known_bad", strategies)])`` or ``hotremove explore --plugin``).

Each is selected by its policy name and answers for every a_ops whose pages carry buffers.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.mm.migrate import (
    BUFFER_MIGRATE_FOLIO,
    MIGRATE_FOLIO,
    MigrateControl,
    MigrateStrategy,
    folio_copy,
    folio_expected_refs,
    folio_migrate_flags,
    folio_migrate_mapping,
    migrate_folio,
)
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import BH_Dirty, buffer_ring, set_bh_page
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_private, put_page


class _Strategy:
    rebinds = True

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        if mapping is None or not src.flags & PG_private:
            return migrate_folio(mc, mapping, dst, src, mode)
        if src._refcount != folio_expected_refs(mapping, src):
            return Errno.EAGAIN
        return self.move(mc, mapping, dst, src)

    def move(self, mc: MigrateControl, mapping: AddressSpace, dst: Page, src: Page) -> Errno:
        raise NotImplementedError


class UnlockedRebind(_Strategy):
    """``buffer_migrate_folio`` without ``buffer_migrate_lock_buffers``: the buffers move to
    the new page while someone may be doing I/O on them (jbd2's ordered-data write holds only
    BH_Lock — no page lock, no PG_writeback)."""

    name = "unlocked_rebind"

    def move(self, mc: MigrateControl, mapping: AddressSpace, dst: Page, src: Page) -> Errno:
        ring = buffer_ring(src.private)
        rc = folio_migrate_mapping(mapping, dst, src)
        if rc:
            return rc
        dst.private, src.private = src.private, None  # attach/detach private: one ref moves
        dst._refcount += 1
        src._refcount -= 1
        src.flags &= ~PG_private
        dst.flags |= PG_private
        for bh in ring:
            set_bh_page(bh, dst, bh.b_offset)
        folio_copy(mc, dst, src)
        folio_migrate_flags(dst, src)
        return Errno.OK


class NoPageRef(_Strategy):
    """The seed's hand-made private transfer with ``page_cache_get(newpage)`` forgotten: the
    old page's private reference is dropped, the new page never gets one."""

    name = "no_page_ref"

    def move(self, mc: MigrateControl, mapping: AddressSpace, dst: Page, src: Page) -> Errno:
        head = src.private
        rc = folio_migrate_mapping(mapping, dst, src)
        if rc:
            return rc
        dst.private, src.private = head, None
        put_page(src)  # page_cache_release(page) ...
        # ... and page_cache_get(newpage) forgotten
        src.flags &= ~PG_private
        dst.flags |= PG_private
        for bh in buffer_ring(head):
            set_bh_page(bh, dst, bh.b_offset)
        folio_copy(mc, dst, src)
        folio_migrate_flags(dst, src)
        return Errno.OK


class ClearsBufferDirty:
    """``buffer_migrate_folio``, then "the page is dirty, that is enough": every buffer's own
    dirty bit cleared. Writeback of a page with buffers writes only dirty buffers."""

    name = "clears_buffer_dirty"
    rebinds = True

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        rc = BUFFER_MIGRATE_FOLIO.migrate_folio(mc, mapping, dst, src, mode)  # type: ignore[arg-type]
        if rc is Errno.OK and dst.flags & PG_private:
            for bh in buffer_ring(dst.private):
                bh.b_state &= ~BH_Dirty
        return rc


POLICIES: dict[str, MigrateStrategy] = {
    "bad-unlocked-rebind": UnlockedRebind(),
    # data=journal buffers rebound as if jbd2 did not hold them (no _norefs check)
    "bad-journal-rebind": BUFFER_MIGRATE_FOLIO,
    "bad-no-page-ref": NoPageRef(),
    "bad-clears-buffer-dirty": ClearsBufferDirty(),
}


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register("known-bad", aops=[], description="deliberately wrong", policies=sorted(POLICIES))


@hookimpl(tryfirst=True)
def hotremove_migrate_strategy(mapping: AddressSpace, policy: str) -> MigrateStrategy | None:
    strategy = POLICIES.get(policy)
    if strategy is None:
        return None
    return strategy if mapping.a_ops.buffers else MIGRATE_FOLIO
