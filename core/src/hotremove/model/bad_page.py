"""mm/page_alloc.c's free-time check: a page freed in a state no freed page may have is
"BUG: Bad page state" — reported, the kernel tainted, and the page *not* freed (leaked), so
a block holding it can never go offline. A migration that forgets a step (PG_private left on
the old page, ->mapping not cleared) is caught here whatever the debug options: the kernel
checks every freed page either at the free or when the per-cpu lists drain into the buddy
(``free_pcp_prepare`` / ``bulkfree_pcp_prepare``), and offlining runs with the per-cpu lists
disabled (``zone_pcp_disable``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotremove.model.page import (
    MemMap,
    PG_active,
    PG_anon,
    PG_locked,
    PG_lru,
    PG_mlocked,
    PG_private,
    PG_private_2,
    PG_reserved,
    PG_slab,
    PG_unevictable,
    PG_writeback,
)

#: include/linux/page-flags.h ``PAGE_FLAGS_CHECK_AT_FREE``: a page freed with any of these is
#: a kernel bug. The set of v6.1 (LRU_GEN_MASK aside: the model has no multi-gen LRU); PG_slab
#: left it in v6.10 when slab became a page type, and no page the model frees is slab. 2.6.7's
#: ``free_pages_check`` tested the same bits that existed then (lru, private, locked, active,
#: slab, writeback, and reclaim/swapcache).
PAGE_FLAGS_CHECK_AT_FREE = (
    PG_lru
    | PG_locked
    | PG_private
    | PG_private_2
    | PG_writeback
    | PG_reserved
    | PG_slab
    | PG_active
    | PG_unevictable
    | PG_mlocked
)


@dataclass(frozen=True)
class BadPage:
    """mm/page_alloc.c ``bad_page()``: "BUG: Bad page state" — a page freed with a flag of
    :data:`PAGE_FLAGS_CHECK_AT_FREE`, a file page still pointing at its mapping, or page-table
    mappings left. The kernel reports it, taints itself and does not free the page."""

    pfn: int
    reason: str  #: ``free_page_is_bad_report``'s words
    flags: int


def free_page_is_bad(mm: MemMap, pfns: np.ndarray, bad_pages: list[BadPage]) -> np.ndarray:
    """mm/page_alloc.c ``free_page_is_bad()`` (v6.1–7.x; ``free_pages_check()`` in 2.6.7)
    for frames about to be freed: a mask of the bad ones, each appended to ``bad_pages`` as
    the kernel's ``bad_page()`` reports it. An anonymous page's ``->mapping`` (its anon_vma)
    is cleared by ``free_pages_prepare`` itself; a file page's must have been cleared by its
    owner (migration: ``move_to_new_folio``)."""
    flags = mm.flags[pfns]
    mapped = (mm.mapping_id[pfns] != 0) & (flags & PG_anon == 0)
    bad = (flags & PAGE_FLAGS_CHECK_AT_FREE != 0) | mapped | (mm.mapcount[pfns] != 0)
    for i in np.flatnonzero(bad).tolist():
        f = int(flags[i])
        if mm.mapcount[pfns[i]]:
            reason = "nonzero mapcount"
        elif f & PAGE_FLAGS_CHECK_AT_FREE:
            reason = "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
        else:
            reason = "non-NULL mapping"
        bad_pages.append(BadPage(int(pfns[i]), reason, f))
    return bad
