"""Anonymous memory a scenario asks for: a process's pages (one PTE each), some in the swap
cache or mlocked, and 2 MiB transparent huge pages."""

from __future__ import annotations

import numpy as np

from hotremove.errors import WorkloadError
from hotremove.model.address_space import AnonVma
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import (
    HPAGE_NR,
    HPAGE_PMD_ORDER,
    PAGE_SIZE,
    Page,
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_mlocked,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    folio_nr_pages,
)
from hotremove.scenario import WorkloadConfig
from hotremove.workload.golden import Golden, digest
from hotremove.workload.pagecache import FrameAllocator


def anon_pages(
    machine: Machine,
    golden: Golden,
    frames: FrameAllocator,
    rng: np.random.Generator,
    wl: WorkloadConfig,
    huge: list[Page],
) -> None:
    """A process's private memory: one PTE (and so one reference) per page, no buffers;
    some pages also in the swap cache or mlocked, and the huge pages allocated up front."""
    n = wl.anon // PAGE_SIZE
    if not n and not huge:
        return
    vma = AnonVma("anon")
    machine.anon_vmas.append(vma)
    for vpn in range(n):
        page = frames.alloc()  # its one reference becomes the PTE's
        add_anon_folio(machine, golden, vma, page, vpn, rng)
        if rng.random() < wl.swapcache:
            add_to_swap_cache(machine, page)
        if rng.random() < wl.mlocked:
            page.flags |= PG_mlocked | PG_unevictable
    for i, head in enumerate(huge):
        add_anon_folio(machine, golden, vma, head, THP_VPN_BASE + i * HPAGE_NR, rng)


THP_VPN_BASE = 1 << 20  # huge pages live in their own aligned stretch of the address space


def add_anon_folio(
    machine: Machine,
    golden: Golden,
    vma: AnonVma,
    page: Page,
    vpn: int,
    rng: np.random.Generator,
) -> None:
    """Fill an allocated folio with random bytes and map it at ``vpn`` (one PTE, or a PMD
    for a huge page, holding one reference); record every subpage in the golden model."""
    nr = folio_nr_pages(page)
    frames = machine.memory.frames[page.pfn : page.pfn + nr]
    frames[:] = np.frombuffer(rng.bytes(PAGE_SIZE * nr), dtype=np.uint8).reshape(nr, PAGE_SIZE)
    page.flags |= PG_anon | PG_swapbacked | PG_uptodate | PG_lru | PG_dirty
    page.mapping = vma
    page.index = vpn
    page._mapcount = 1  # one PTE, or one PMD for a huge page
    for sub in range(nr):
        vma.ptes[vpn + sub] = page.pfn + sub
        golden.anon[(vma.name, vpn + sub)] = digest(frames[sub])


def alloc_thp(memory: PhysicalMemory, rng: np.random.Generator, placement: str) -> Page:
    nr = HPAGE_NR
    starts = [
        s
        for s in range(0, memory.nr_pages - nr + 1, nr)
        if all(memory.is_free(p) for p in (s, s + nr // 2, s + nr - 1))
    ]
    if placement == "spread":
        rng.shuffle(starts)
    for start in starts:
        try:
            return memory.alloc_compound_at(start, HPAGE_PMD_ORDER)
        except ValueError:
            continue
    raise WorkloadError("workload.thp: no free, aligned 2 MiB range left for a huge page")


def add_to_swap_cache(machine: Machine, page: Page) -> None:
    """Give an anonymous page a swap slot: the swap cache holds a reference and the entry
    lives in ->private (``folio->swap``)."""
    entry = len(machine.swap_cache.i_pages) + 1
    while entry in machine.swap_cache.i_pages:
        entry += 1
    page.flags |= PG_swapcache
    page.private = entry
    page._refcount += 1
    machine.swap_cache.i_pages[entry] = page
