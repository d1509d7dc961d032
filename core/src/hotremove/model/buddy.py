"""The buddy allocator's free lists of the simulated zone: in which order frames are handed out.

Where a migration's destination lands decides whether a later block's offline moves the page
again (a page of block 1 moved into block 2 moves once more when block 2 goes), so the order
follows the kernel's (Linux 6.1 mm/page_alloc.c, unifreq/linux-6.1.y @07badeaa490f, and
mm/memory_hotplug.c; 6.12 keeps the order: 6.8 renamed MAX_ORDER - 1 to MAX_PAGE_ORDER = 10,
6.10 folded the split into ``page_del_and_expand`` whose ``expand`` still adds at the heads —
read in those patches and the current tree, not in a 6.12 tree):

* **Zone.** A hot-remove destination comes from ``alloc_migration_target`` (mm/migrate.c) with
  ``GFP_USER | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL``, plus ``__GFP_HIGHMEM`` for a source in
  ZONE_MOVABLE: the zonelist starts at ZONE_MOVABLE. Every simulated block is the guest DIMM's
  ZONE_MOVABLE (``memhp_default_state=online_movable``); boot memory (ZONE_NORMAL, where the
  kernel falls back below ZONE_MOVABLE's low watermark) is not simulated: running out of
  free frames is -ENOMEM.
* **No per-cpu lists during an offline.** ``offline_pages`` calls ``zone_pcp_disable`` (high
  0, batch 1) before isolating: every allocation and free of the zone goes straight to the
  buddy lists until it returns.
* **Which chunk.** ``__rmqueue_smallest`` takes the head of the smallest order's list that
  is not empty; ``expand`` puts the unused halves at the heads of the lower orders' lists, so
  a chunk is handed out lowest frame first and used up before anything else.
* **Onlined memory goes to the tail.** ``online_pages`` → ``online_pages_range`` (4 MiB
  chunks) → ``generic_online_page`` → ``__free_pages_core`` frees with ``FPI_TO_TAIL``
  (7fef431be9c9, v5.10): blocks onlined in ascending order are handed out in ascending
  order. ``undo_isolate_page_range`` (a failed offline) moves the block's free chunks to
  the tails too (``move_freepages_block`` → ``move_to_free_list``, ``list_move_tail``).
* **Isolation.** ``start_isolate_page_range`` moves a block's free chunks to the
  MIGRATE_ISOLATE lists: nothing is handed out from it; frames freed there (the migrated
  sources) stay out (``free_unref_page``: an isolated pageblock's page goes to
  ``free_one_page``, not a per-cpu list).
* **A free** (``__free_one_page``) merges with free buddies, then goes to the head — or the
  tail when the buddy of the merged chunk's parent is free (``buddy_merge_likely``).

Not modelled: per-cpu lists between offlines (the builder places the page cache itself),
watermarks and the fallback to other zones, MIGRATE_* fallbacks (ZONE_MOVABLE holds movable
pageblocks only), page shuffling (``page_alloc.shuffle``, off unless asked for). Frames the
builder places directly leave the lists to be rebuilt: every free run of an online block cut
into its largest aligned chunks, each order's list in ascending address order — what
onlining in ascending order and allocating lowest first would have left.
"""

from __future__ import annotations

from array import array

import numpy as np

#: the largest chunk: order 10, 4 MiB (6.1: MAX_ORDER - 1; 6.12: MAX_PAGE_ORDER)
MAX_PAGE_ORDER = 10


def max_order_for(pages_per_block: int) -> int:
    """The largest order whose aligned chunks never straddle two memory blocks (x86-64's
    128 MiB blocks: the kernel's 10; the tests' tiny blocks: less)."""
    order = 0
    while order < MAX_PAGE_ORDER and pages_per_block % (2 << order) == 0:
        order += 1
    return order


def chunk_starts(free: np.ndarray, max_order: int) -> list[np.ndarray]:
    """The buddy chunks of ``free`` (one bool per frame, frame 0 aligned to ``2**max_order``):
    per order, the ascending first frames of the largest aligned all-free runs."""
    levels = [free.astype(bool)]
    for _ in range(max_order):
        prev = levels[-1]
        half = len(prev) // 2
        levels.append(prev[0 : 2 * half : 2] & prev[1 : 2 * half : 2])
    starts = []
    for order, level in enumerate(levels):
        mine = level.copy()
        if order < max_order:
            parent = levels[order + 1]
            covered = np.zeros(len(level), bool)
            covered[: 2 * len(parent)] = np.repeat(parent, 2)
            mine &= ~covered
        starts.append(np.flatnonzero(mine).astype(np.int64) << order)
    return starts


class FreeArea:
    """``zone->free_area[order].free_list[MIGRATE_MOVABLE]`` of the online blocks.

    Each order's list is an int64 ``array`` whose *end* is the list's head (``list_add``
    appends, ``__rmqueue_smallest`` pops) and whose start is its tail. ``order_of[pfn]`` is
    the order of the free chunk starting at ``pfn`` (-1: none), so a buddy is found in O(1);
    every chunk on a list is in ``order_of`` and the other way round.
    """

    def __init__(self, nr_pages: int, pages_per_block: int) -> None:
        self.nr_pages = nr_pages
        self.pages_per_block = pages_per_block
        self.max_order = max_order_for(pages_per_block)
        self.order_of = np.full(nr_pages, -1, np.int8)
        self.lists = [array("q") for _ in range(self.max_order + 1)]
        #: the lists no longer describe the free frames (the builder placed pages
        #: directly): rebuild before the next allocation or free
        self.stale = True

    @property
    def nbytes(self) -> int:
        return self.order_of.nbytes + sum(lst.itemsize * len(lst) for lst in self.lists)

    # -- building ----------------------------------------------------------------------------
    def rebuild(self, free_online: np.ndarray) -> None:
        """Lists from scratch: every free frame of an online block (``free_online``) in its
        largest aligned chunk, ascending (see the module doc)."""
        self.order_of[:] = -1
        for order, starts in enumerate(chunk_starts(free_online, self.max_order)):
            self.order_of[starts] = order
            self.lists[order] = array("q", starts[::-1].tobytes())
        self.stale = False

    def add_block_to_tail(self, start: int, free: np.ndarray) -> None:
        """A block's free frames (``free``: one bool per frame from ``start``) join the lists
        at their tails, lowest first (``undo_isolate_page_range``; onlining)."""
        align = 1 << self.max_order
        lo = start - start % align
        mask = np.zeros(start - lo + len(free), bool)
        mask[start - lo :] = free
        for order, starts in enumerate(chunk_starts(mask, self.max_order)):
            if len(starts):
                starts = starts + lo
                self.order_of[starts] = order
                self.lists[order] = array("q", starts[::-1].tobytes()) + self.lists[order]

    def remove_block(self, start: int, end: int) -> None:
        """A block's chunks leave the lists (isolated or offline)."""
        self.order_of[start:end] = -1
        for order, lst in enumerate(self.lists):
            if lst:
                entries = np.frombuffer(lst, np.int64)
                keep = (entries < start) | (entries >= end)
                if not keep.all():
                    self.lists[order] = array("q", entries[keep].tobytes())
                del entries

    # -- allocation --------------------------------------------------------------------------
    def rmqueue(self, order: int) -> int:
        """``__rmqueue_smallest``: the first frame of a free ``2**order`` chunk, or -1."""
        for current in range(order, self.max_order + 1):
            lst = self.lists[current]
            if lst:
                pfn = lst.pop()
                self.order_of[pfn] = -1
                self.expand(pfn, order, current)
                return pfn
        return -1

    def expand(self, pfn: int, low: int, high: int) -> None:
        """The upper halves of a split chunk go to the heads of the lower orders' lists."""
        order_of, lists = self.order_of, self.lists
        while high > low:
            high -= 1
            half = pfn + (1 << high)
            order_of[half] = high
            lists[high].append(half)

    def rmqueue_bulk(self, nr: int) -> np.ndarray:
        """Up to ``nr`` order-0 frames in exactly the order ``nr`` calls of ``rmqueue(0)``
        return them: the smallest chunk first, each used up lowest frame first (``expand``
        keeps its remainder at the lists' heads, below every other chunk's order)."""
        taken: list[np.ndarray] = []
        need = nr
        while need:
            current = next((o for o, lst in enumerate(self.lists) if lst), -1)
            if current < 0:
                break
            pfn = self.lists[current].pop()
            self.order_of[pfn] = -1
            size = 1 << current
            if size <= need:
                taken.append(np.arange(pfn, pfn + size, dtype=np.int64))
                need -= size
                continue
            taken.append(np.arange(pfn, pfn + need, dtype=np.int64))
            self.put_remainder(pfn + need, pfn + size)
            need = 0
        return np.concatenate(taken) if taken else np.zeros(0, np.int64)

    def put_remainder(self, start: int, end: int) -> None:
        """What single allocations leave of a chunk after taking ``start - chunk``
        frames: the rest ``start .. end - 1`` (``end`` aligned) in its aligned pieces, each at
        the head of its order's list (every order below the chunk's had no other entry)."""
        while start < end:
            order = (start & -start).bit_length() - 1
            while start + (1 << order) > end:
                order -= 1
            self.order_of[start] = order
            self.lists[order].append(start)
            start += 1 << order

    # -- freeing -----------------------------------------------------------------------------
    def free_one(self, pfn: int) -> None:
        """``__free_one_page`` of an order-0 frame of an online block: merge with free
        buddies in the same block, then head (or tail if ``buddy_merge_likely``)."""
        order_of = self.order_of
        block_start = pfn - pfn % self.pages_per_block
        block_end = block_start + self.pages_per_block
        order = 0
        buddy = pfn ^ 1
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if not block_start <= buddy < block_end or order_of[buddy] != order:
                break
            self.unlink(buddy, order)
            pfn &= buddy
            order += 1
        order_of[pfn] = order
        lst = self.lists[order]
        # buddy_merge_likely: not for the two highest orders (6.1: MAX_ORDER - 2; 6.12:
        # MAX_PAGE_ORDER - 1); otherwise tail when the parent's buddy is a free chunk
        higher = buddy & pfn
        parent_buddy = higher ^ (2 << order)
        if (
            order < self.max_order - 1
            and block_start <= parent_buddy < block_end
            and order_of[parent_buddy] == order + 1
        ):
            lst.insert(0, pfn)
        else:
            lst.append(pfn)

    def unlink(self, pfn: int, order: int) -> None:
        """``del_page_from_free_list``: a buddy merged away."""
        lst = self.lists[order]
        entries = np.frombuffer(lst, np.int64)
        index = int(np.flatnonzero(entries == pfn)[-1])
        del entries  # the array cannot shrink while a view exports its buffer
        del lst[index]
        self.order_of[pfn] = -1
