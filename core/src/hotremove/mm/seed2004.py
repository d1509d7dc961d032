"""The 2004 seed patch's strategy, step by step: what kernel "2004" migrates ext2 pages with
(and ext3's ordered/writeback pages, "with trivial changes"), and what the ext2 plugin's
policy variant ``ext2-seed2004`` runs in any kernel.

IWAMOTO Toshihiro's "rebinding buffer_head to new (remapped) page" (linux-kernel, 15 July
2004, over linux-2.6.7), in the patch's own order and names:

``remap_onepage`` (the engine: ``lock_page(page)``, wait for writeback) →
``remap_preparepage``: a dirty page with buffers → ``remap_move_buffer_ext2``:
``spin_lock(&mapping->private_lock)``, then ``get_bh`` + ``lock_buffer`` on every buffer —
**a sleeping function called with a spinlock held** — then ``page->private`` moves by hand
(``page_cache_release(page)``, ``page_cache_get(newpage)``, ``ClearPagePrivate``/
``SetPagePrivate``) and ``set_bh_page`` points each buffer at the new page; a clean page with
buffers drops them (``try_to_release_page``) → the radix-tree replacement (here
``folio_migrate_mapping``; on failure the patch's ``radixfail`` path hits ``BUG()`` when the
buffers were already moved) → copy → ``remap_exchange_pages``: the "XXX this will make a
whole page dirty" ``set_page_dirty(newpage)`` (every buffer dirty, under ``private_lock``),
then ``put_bh`` + ``unlock_buffer`` on each buffer under ``private_lock`` again — with the
buffer locks held, so ``buffer_lock → private_lock`` meets the earlier
``private_lock → buffer_lock``: lockdep's circular dependency.

ext3: the mail says "I've also tried with ext3 with trivial changes to the patch, and it also
seems to work". The changes are not in the mail; the trivial reading, modelled here, is that
``remap_preparepage``'s ``mapping->a_ops == &ext2_aops`` test also admits
``ext3_ordered_aops`` and ``ext3_writeback_aops``, so ext3 pages run the very same
``remap_move_buffer_ext2`` (an ordered buffer's journal_head travels with it: the
buffer_head itself does not change). ``ext3_journalled_aops`` was not admitted: its pages
were written back, like every other filesystem's.

Kept as it was, bugs included: this is the test subject the lock checker must flag (and the
reason ``buffer_migrate_folio`` locks buffers first, under no spinlock). Differences forced
by the engine's contract: the engine locks, unlocks and releases the old page itself (the
patch's ``unlock_page(page)`` and ``__put_page(page)`` in ``remap_exchange_pages``), and
``set_page_dirty`` dirties only mapped buffers (the kernel's writeback cleans the unmapped
ones past EOF; the simulator's sync would otherwise write block -1).

Plugins use :data:`SEED2004` (a :class:`~hotremove.mm.migrate.MigrateStrategy`) as their answer.
"""

from __future__ import annotations

from hotremove.mm.migrate import (
    MigrateControl,
    folio_copy,
    folio_migrate_flags,
    folio_migrate_mapping,
    migrate_folio,
)
from hotremove.mm.page_writeback import filemap_release_folio
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import (
    BH_Dirty,
    BH_Mapped,
    buffer_ring,
    get_bh,
    lock_buffer,
    put_bh,
    set_bh_page,
    unlock_buffer,
)
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_dirty, PG_private, PG_uptodate, get_page, put_page


def remap_move_buffer_ext2(page: Page, newpage: Page) -> None:
    """The seed's rebinding: under ``private_lock``, lock every buffer (may sleep!), move
    ->private and the page reference by hand, repoint every buffer. Buffers stay locked
    "until remapping is complete"."""
    mapping = page.mapping
    with mapping.private_lock:
        head = page.private
        for bh in buffer_ring(head):
            get_bh(bh)
            lock_buffer(bh)  # BUG: sleeping function called from invalid context
        newpage.private = page.private
        page.private = None
        put_page(page)  # page_cache_release(page)
        get_page(newpage)  # page_cache_get(newpage)
        page.flags &= ~PG_private  # "XXX"
        newpage.flags |= PG_private
        for bh in buffer_ring(head):
            if bh.b_page != page:
                raise AssertionError(f"kernel BUG: bh->b_page != page for {bh!r}")
            set_bh_page(bh, newpage, bh.b_offset)


def remap_preparepage(
    mc: MigrateControl, mapping: AddressSpace, page: Page, newpage: Page, mode: MigrateMode
) -> Errno:
    """Dirty pages with buffers rebind them; other pages with buffers must drop them
    (``try_to_release_page``: ``->releasepage`` — ext3's asks the journal — else
    ``try_to_free_buffers``; today's ``filemap_release_folio``)."""
    if page.flags & PG_private and page.flags & PG_dirty:
        remap_move_buffer_ext2(page, newpage)
    if page.flags & PG_private:  # "XXX copied from shrink_list()": try_to_release_page
        if not filemap_release_folio(mapping, page):
            return Errno.EAGAIN
        mc.vmstat.nr_buffers_freed += 1
    return Errno.OK


def set_page_dirty_buffers(mapping: AddressSpace, page: Page) -> None:
    """2.6's ``__set_page_dirty_buffers``: every buffer dirty (under ``private_lock``), then
    the page and its radix-tree tag."""
    with mapping.private_lock:
        for bh in buffer_ring(page.private if page.flags & PG_private else None):
            if bh.b_state & BH_Mapped:
                bh.b_state |= BH_Dirty
    page.flags |= PG_dirty
    mapping.tag_dirty(page.index)


def remap_exchange_pages(mapping: AddressSpace, newpage: Page, was_dirty: bool) -> None:
    """Finish: re-dirty the new page ("XXX this will make a whole page dirty"), then drop
    the buffer references and locks taken in ``remap_move_buffer_ext2``."""
    if was_dirty:
        newpage.flags &= ~PG_dirty  # ClearPageDirty(newpage): "to force radix tag set"
        set_page_dirty_buffers(mapping, newpage)
    if newpage.flags & PG_private:
        with mapping.private_lock:
            for bh in buffer_ring(newpage.private):
                put_bh(bh)
                unlock_buffer(bh)
    newpage.flags |= PG_uptodate  # SetPageUptodate(newpage)


class Seed2004Strategy:
    """``remap_onepage`` with the seed's buffer handling, as a migration strategy (its name is
    the seed's rebinding function, for ext2 and ext3 alike)."""

    name = "remap_move_buffer_ext2"
    rebinds = True
    source = "mm/memhotplug.c remap_move_buffer_ext2(), 2004 patchset"

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
        was_dirty = bool(src.flags & PG_dirty)
        rc = remap_preparepage(mc, mapping, src, dst, mode)
        if rc:
            return rc
        rc = folio_migrate_mapping(mapping, dst, src)  # the radix-tree replacement
        if rc:
            if dst.flags & PG_private:  # radixfail: "if (PagePrivate(newpage)) BUG();"
                raise AssertionError(
                    "kernel BUG at mm/memhotplug.c (remap_onepage radixfail): the page "
                    "is busy but its buffers were already moved to the new page"
                )
            return rc
        folio_copy(mc, dst, src)
        folio_migrate_flags(dst, src)
        remap_exchange_pages(mapping, dst, was_dirty)
        if dst.flags & PG_private:
            mc.vmstat.nr_rebound += 1
        return Errno.OK


SEED2004 = Seed2004Strategy()

__all__ = [
    "SEED2004",
    "Seed2004Strategy",
    "remap_exchange_pages",
    "remap_move_buffer_ext2",
    "remap_preparepage",
    "set_page_dirty_buffers",
]
