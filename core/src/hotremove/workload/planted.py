"""Pages a scenario plants in states migration must cope with: writeback in flight,
buffers locked by another task, extra references (pins), and kernel pages that never move."""

from __future__ import annotations

import numpy as np

from hotremove.errors import WorkloadError
from hotremove.mm.page_writeback import start_writeback
from hotremove.model.buffer_head import BH_Lock, BufferHead, page_buffers
from hotremove.model.machine import Machine
from hotremove.model.page import Page, PG_dirty, PG_pgtable, PG_private, PG_reserved, PG_slab
from hotremove.scenario import WorkloadConfig
from hotremove.workload.pagecache import FrameAllocator


def lock_buffer_elsewhere(machine: Machine, bh: BufferHead, hold_seconds: float = 1e-3) -> None:
    """Another task holds ``bh``'s lock (a metadata lookup, a reader): whoever sleeps on it
    waits ``hold_seconds`` until that task unlocks."""
    bh.b_state |= BH_Lock

    def release() -> None:
        bh.b_state &= ~BH_Lock
        machine.clock.cpu_seconds += hold_seconds

    machine.waiters[bh] = release


def pin_page(machine: Machine, page: Page, release_after: int = 0) -> None:
    """Someone holds an extra reference (``get_page``): migration's expected-refcount check
    fails until they let go, after ``release_after`` migration passes (0: never)."""
    page._refcount += 1
    machine.pins[page] = machine.pins.get(page, 0) + 1
    if not release_after:
        return
    remaining = [release_after]

    def holder(m: Machine) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            page._refcount -= 1
            m.pins[page] -= 1
            if not m.pins[page]:
                del m.pins[page]
            m.daemons.remove(holder)

    machine.daemons.append(holder)


UNMOVABLE_KINDS = (PG_reserved, PG_slab, PG_pgtable)


def unmovable_pages(machine: Machine, frames: FrameAllocator, n: int, blocks: list[int]) -> None:
    """Kernel allocations (memblock reserved, slab, page tables) that can never move."""
    memory = machine.memory
    candidates = (
        iter(
            pfn
            for b in blocks
            for pfn in range(memory.blocks[b].start_pfn, memory.blocks[b].end_pfn)
        )
        if blocks
        else None
    )
    for i in range(n):
        if candidates is None:
            page = frames.alloc()
        else:
            pfn = next((p for p in candidates if memory.is_free(p)), None)
            if pfn is None:
                raise WorkloadError("workload.unmovable_blocks: no free frame left there")
            page = memory.alloc_page_at(pfn)
        page.flags |= UNMOVABLE_KINDS[i % len(UNMOVABLE_KINDS)]


def plant_page_classes(machine: Machine, rng: np.random.Generator, wl: WorkloadConfig) -> None:
    """Writeback in flight, buffers locked by another task, extra references (each step
    only when the scenario asks for it)."""
    for mapping in machine.mappings if wl.writeback or wl.locked else ():
        for index in sorted(mapping.i_pages):
            page = mapping.i_pages[index]
            if page.flags & PG_dirty and rng.random() < wl.writeback:
                start_writeback(machine, mapping, page)
            elif page.flags & PG_private and rng.random() < wl.locked:
                lock_buffer_elsewhere(machine, page_buffers(page)[0])
    cached = [p for m in machine.mappings for p in m.i_pages.values()] if wl.pinned else []
    if cached:
        for i in rng.choice(len(cached), size=min(wl.pinned, len(cached)), replace=False):
            pin_page(machine, cached[int(i)], wl.pin_release)
