"""The allocator hands out frames in the buddy allocator's order (hotremove.model.buddy):
where a migration's destinations land decides which pages a later block's offline moves
again, so the order is asserted frame by frame."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hotremove.model.memory import ISOLATED, OFFLINE, ONLINE, PhysicalMemory
from hotremove.model.page import put_page

BLOCK = 8 << 20  # 2,048 frames: order-10 chunks fit, two per block
PPB = BLOCK // 4096


def memory(blocks: int = 4) -> PhysicalMemory:
    return PhysicalMemory(blocks * BLOCK, BLOCK)


def take(mem: PhysicalMemory, n: int) -> list[int]:
    return [mem.alloc_page().pfn for _ in range(n)]  # type: ignore[union-attr]


def test_fresh_memory_is_handed_out_lowest_frame_first_block_by_block():
    mem = memory()
    assert take(mem, 3) == [0, 1, 2]
    assert mem.alloc_pages_bulk(PPB * 2).tolist() == list(range(3, 3 + 2 * PPB))


def test_after_a_fill_placement_allocation_continues_at_the_first_free_frame():
    mem = memory()
    mem.alloc_pages_at(np.arange(PPB + 100))  # block 0 and 100 frames of block 1
    assert take(mem, 2) == [PPB + 100, PPB + 101]


def test_the_smallest_free_chunk_goes_first():
    """__rmqueue_smallest: a lone free frame (order 0) before any split of a larger chunk,
    wherever the larger chunk is."""
    mem = memory()
    holes = [5, *range(2 * PPB - 8, 2 * PPB)]  # one frame at 5, eight at 4088
    used = np.setdiff1d(np.arange(2 * PPB), holes)
    mem.alloc_pages_at(used)
    # order 0 at 5, then the order-3 chunk at 4088 (split lowest first), then block 2
    assert take(mem, 10) == [5, *range(2 * PPB - 8, 2 * PPB), 2 * PPB]


def test_an_isolated_block_gives_nothing_and_its_frames_come_back_at_the_tail():
    """start_isolate_page_range takes a block's free chunks off the lists; an undone
    offline (undo_isolate_page_range) puts them back at the tails: fresh chunks of the
    other blocks come first."""
    mem = memory(3)
    mem.set_block_state(0, ISOLATED)
    assert take(mem, 2) == [PPB, PPB + 1]
    mem.set_block_state(0, ONLINE)
    # block 1's split chunk is used up first (smaller orders), then the order-10 lists'
    # heads: block 1's second chunk and block 2's, before block 0's at the tail
    got = mem.alloc_pages_bulk(3 * PPB - 2)
    assert got[: 2 * PPB - 2].tolist() == list(range(PPB + 2, 3 * PPB))
    assert got[2 * PPB - 2 :].tolist() == list(range(0, PPB))


def test_an_offline_block_is_never_handed_out():
    mem = memory(2)
    mem.set_block_state(0, ISOLATED)
    mem.set_block_state(0, OFFLINE)
    assert mem.alloc_pages_bulk(PPB + 1).tolist() == list(range(PPB, 2 * PPB))
    assert mem.alloc_page() is None  # -ENOMEM: no other zone to fall back to


def test_a_freed_destination_is_handed_out_again_next():
    """A migration that fails after taking its destination frees it (__free_one_page
    merges it back with its buddies): the next allocation takes the same frame."""
    mem = memory()
    take(mem, 7)
    page = mem.alloc_page()
    assert page is not None and page.pfn == 7
    put_page(page)
    mem.free_page(page)
    assert take(mem, 2) == [7, 8]


@settings(max_examples=40, deadline=None)
@given(
    used=st.lists(st.integers(0, 4 * PPB - 1), max_size=6000, unique=True),
    isolated=st.sets(st.integers(0, 3), max_size=2),
    nr=st.integers(1, 9000),
)
def test_bulk_allocation_equals_one_by_one(used, isolated, nr):
    """alloc_pages_bulk (the batched path's) hands out the very frames, in the very order,
    that as many alloc_page calls (the per-page path's) do, and leaves the same lists."""
    runs = []
    for _ in range(2):
        mem = memory()
        mem.alloc_pages_at(np.array(sorted(used), np.int64))
        for block in sorted(isolated):
            mem.set_block_state(block, ISOLATED)
        runs.append(mem)
    bulk = runs[0].alloc_pages_bulk(nr).tolist()
    singles = []
    while len(singles) < nr and (page := runs[1].alloc_page()) is not None:
        singles.append(page.pfn)
    assert bulk == singles
    assert np.array_equal(runs[0].free_area.order_of, runs[1].free_area.order_of)
    assert [list(x) for x in runs[0].free_area.lists] == [list(x) for x in runs[1].free_area.lists]
    assert bytes(runs[0]._free) == bytes(runs[1]._free)
