"""Focus: explore a region of any size by interleaving only at a window of its pages.

Preempting at every lock of every page makes a schedule's length grow with the region: a
384 MiB region is ~100,000 pages and millions of preemption points. Races need two tasks on
the same page, so a focused schedule lets the actors touch only a *window* of the region's
page-cache pages — chosen from the explorer's seed, the same for every schedule of it — and
preempts only at the locks, waits and I/O of those pages (and at locks that belong to no page:
``private_lock``, the journal's mutexes, explicit ``preempt()`` calls). The rest of the region
is touched by nobody else, so it moves as it would with nobody else running: on the batched
path (:mod:`hotremove.mm.batch`), which the engine takes for every page whose pfn is not in
:attr:`Focus.pfns` even while the explorer's lock tracker is installed. The end invariants
(locks, references, ``check_machine`` over every offlined block, every file after sync)
still cover the whole region; the continuous ones (checked at each task switch) cover the
window, the only pages another task can see change.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hotremove.model.machine import Machine

#: pages in the window the actors touch (the built-in scenarios hold 16 pages in all)
FOCUS_PAGES = 16


@dataclass(frozen=True, eq=False)
class Focus:
    """The window: its pages by (mapping, index) — what follows a page when it moves — and
    by source pfn (what the engine's batched path leaves to the per-page path)."""

    keys: frozenset[tuple[int, int]]  # (id(mapping), index)
    pfns: np.ndarray  # the window's frames when the offline starts, sorted
    files: tuple[str, ...]  # "s_id:path" of the files the window covers
    region_pages: int

    def covers_page(self, page: object) -> bool:
        if page is None:
            return True
        mapping = page.mapping  # type: ignore[attr-defined]
        return (id(mapping), page.index) in self.keys  # type: ignore[attr-defined]

    def covers(self, obj: object) -> bool:
        """Whether a preemption point on ``obj`` is one the schedule interleaves at: a page
        or buffer of the window, or anything that is not a page's (a spinlock, a mutex)."""
        if obj is None:
            return True
        if getattr(obj, "b_blocknr", None) is not None:  # a buffer_head: its page's
            return self.covers_page(obj.b_page)  # type: ignore[attr-defined]
        if getattr(obj, "_mm", None) is not None:  # a struct page
            return self.covers_page(obj)
        return True

    def describe(self) -> str:
        """One line for the output: what the window is and how it was chosen."""
        if not len(self.pfns):
            return (
                f"focus: none of the region's {self.region_pages:,} pages is page cache: the "
                "actors have nothing to touch, the region moves on the batched path"
            )
        lo, hi = int(self.pfns[0]), int(self.pfns[-1])
        return (
            f"focus: {len(self.pfns)} of the region's {self.region_pages:,} pages "
            f"(pfn {lo:#x}–{hi:#x}, {', '.join(self.files)}), chosen from the seed; the "
            "actors touch only these, the rest of the region moves on the batched path"
        )


def choose_focus(
    machine: Machine, blocks: Sequence[int], seed: int, size: int = FOCUS_PAGES
) -> Focus:
    """``size`` page-cache pages of the region consecutive in pfn order, starting at a place
    drawn from ``seed`` (so every schedule of a seed explores the same window)."""
    memory = machine.memory
    region: list[int] = []
    for b in sorted(set(blocks)):
        region.extend(range(memory.blocks[b].start_pfn, memory.blocks[b].end_pfn))
    in_region = np.zeros(memory.nr_pages, bool)
    in_region[region] = True
    cached = sorted(
        (page.pfn, id(mapping), index, f"{mapping.host.i_sb.s_id}:{mapping.host.path}")
        for mapping in machine.mappings
        for index, page in mapping.i_pages.items()
        if in_region[page.pfn]
    )
    if not cached:
        return Focus(frozenset(), np.zeros(0, np.int64), (), len(region))
    rng = random.Random(f"hotremove-explore-focus/{seed}")
    start = rng.randrange(max(1, len(cached) - size + 1))
    window = cached[start : start + size]
    return Focus(
        keys=frozenset((mapping, index) for _, mapping, index, _ in window),
        pfns=np.array([pfn for pfn, *_ in window], np.int64),
        files=tuple(dict.fromkeys(name for *_, name in window)),
        region_pages=len(region),
    )
