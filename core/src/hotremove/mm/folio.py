"""What migration borrows from the rest of mm/: isolating a folio from the LRU and putting it
back (mm/vmscan.c, mm/migrate.c), its page-table entries (mm/rmap.c ``try_to_migrate``,
mm/migrate.c ``remove_migration_ptes``) and splitting a huge page (mm/huge_memory.c)."""

from __future__ import annotations

import numpy as np

from hotremove.model.address_space import AnonVma
from hotremove.model.machine import Machine
from hotremove.model.page import (
    Page,
    PG_head,
    PG_lru,
    PG_mlocked,
    PG_tail,
    folio_nr_pages,
    put_page,
)


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
