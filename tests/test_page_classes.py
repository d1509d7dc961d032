"""Every page class behaves as the kernel's rules say, in every migrate mode (issue: kernel
fidelity). Real plugins through their entry points, real images, the real engine; each case
ends with a clean verification (sync, e2fsck -fn, every file and anon page byte-equal).

The table itself is documented in hotremove.sim.classify.
"""

from __future__ import annotations

import numpy as np
import pytest

from hotremove.mm.page_writeback import start_writeback
from hotremove.model.address_space import AnonVma
from hotremove.model.buffer_head import BH_Dirty, BH_Lock, page_buffers
from hotremove.model.memory import OFFLINE, ONLINE
from hotremove.model.page import (
    HPAGE_PMD_ORDER,
    PG_dirty,
    PG_locked,
    PG_lru,
    PG_mappedtodisk,
    PG_mlocked,
    PG_pgtable,
    PG_private,
    PG_reserved,
    PG_slab,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    PG_writeback,
)
from hotremove.testing import small_scenario
from hotremove.workload import (
    add_anon_folio,
    add_to_swap_cache,
    lock_buffer_elsewhere,
    pin_page,
)

MODES = ["async", "sync_light", "sync"]
KERNELS = ["2004", "6.1", "6.12"]
REGION = 1


def region_pages(built, want):
    """(mapping, page) of page-cache pages in the region. Remember ``page.index`` before the
    offline: a freed frame's struct page forgets it."""
    memory = built.machine.memory
    return [
        (m, p)
        for m in built.machine.mappings
        for p in m.i_pages.values()
        if memory.block_of(p.pfn) == REGION and want(m, p)
    ]


def build(hotremove_build, mode, *fs, kernel=None, strategy="auto", **workload):
    fs = fs or ({"type": "ext2", "block_size": 1024},)
    return hotremove_build(
        small_scenario(*fs, mode=mode, kernel=kernel, strategy=strategy, **workload)
    )


def finish(built, result, hotremove_verify, *, offlined=True):
    assert result.offlined is offlined, (result.failed, result.reason)
    assert not result.check_failures, result.check_failures[:3]
    verdict = hotremove_verify(built)
    assert verdict.ok, verdict.as_dict()
    return verdict


@pytest.mark.parametrize("mode", MODES)
def test_free_frames_are_isolated(mode, hotremove_build, hotremove_offline, hotremove_verify):
    built = build(hotremove_build, mode)
    memory = built.machine.memory
    block = memory.blocks[REGION]
    free = sum(memory.is_free(p) for p in range(block.start_pfn, block.end_pfn))
    result = hotremove_offline(built)
    assert result.isolated_free == free == result.classes["free"]["pages"]
    assert memory.block_state[REGION] == OFFLINE
    finish(built, result, hotremove_verify)


@pytest.mark.parametrize("mode", MODES)
def test_clean_and_partially_dirty_buffers_rebound_without_io(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode, dirty=0.5)
    dirty = [(m, p.index, p) for m, p in region_pages(built, lambda m, p: p.flags & PG_dirty)]
    states = {bh: bh.b_state for _, _, p in dirty for bh in page_buffers(p)}
    assert any(not s & BH_Dirty for s in states.values()), "partially dirty pages"
    result = hotremove_offline(built)
    assert built.machine.io.write_requests == 0
    assert result.classes["file_buffers"]["migrated"] == result.classes["file_buffers"]["pages"] > 0
    assert result.classes["file_dirty"]["migrated"] == len(dirty) > 0
    for mapping, index, _ in dirty:
        new = mapping.i_pages[index]
        assert [bh.b_state & ~BH_Lock for bh in page_buffers(new)] == [
            states[bh] for bh in page_buffers(new)
        ]
        assert new.flags & (PG_dirty | PG_uptodate | PG_mappedtodisk) == (
            PG_dirty | PG_uptodate | PG_mappedtodisk
        )
    finish(built, result, hotremove_verify)


#: -EBUSY / -EAGAIN attempts a page under writeback sees before it moves, per kernel and mode:
#: the seed waits from its second pass (SYNC); 6.1's classic loop returns -EAGAIN until
#: ``force`` (pass 3) in SYNC; 6.12 starts every batch in ASYNC (-EBUSY), then waits in SYNC
#: — and in ASYNC/SYNC_LIGHT the offline rescans until the write has completed.
WRITEBACK_ATTEMPTS = {
    ("2004", "async"): {"-EBUSY": 1},
    ("2004", "sync_light"): {"-EBUSY": 1},
    ("2004", "sync"): {},
    ("6.1", "async"): {"-EBUSY": 1},
    ("6.1", "sync_light"): {"-EBUSY": 1},
    ("6.1", "sync"): {"-EAGAIN": 3},
    ("6.12", "async"): {"-EBUSY": 1},
    ("6.12", "sync_light"): {"-EBUSY": 2},
    ("6.12", "sync"): {"-EBUSY": 1},
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", MODES)
def test_page_under_writeback(mode, kernel, hotremove_build, hotremove_offline, hotremove_verify):
    built = build(hotremove_build, mode, dirty=0.5, kernel=kernel, strategy="writeback")
    mapping, page = region_pages(built, lambda m, p: p.flags & PG_dirty)[0]
    index = page.index
    start_writeback(built.machine, mapping, page)
    assert page.flags & PG_writeback and any(bh.b_state & BH_Lock for bh in page_buffers(page))
    io_before = built.machine.clock.io_seconds

    result = hotremove_offline(built)

    seen = {k: v for k, v in result.retries.items() if k in ("-EBUSY", "-EAGAIN")}
    other_dirty = {"-EBUSY", "-EAGAIN"} & set(seen)  # the fallback's other dirty pages
    expected = WRITEBACK_ATTEMPTS[(kernel, mode)]
    for label in other_dirty | set(expected):
        assert seen.get(label, 0) >= expected.get(label, 0), (seen, expected)
    assert built.machine.clock.io_seconds > io_before, "the write takes time"
    new = mapping.i_pages[index]
    assert new != page and not new.flags & PG_writeback
    assert result.classes["writeback"] == {"pages": 1, "migrated": 1, "failed": 0}
    finish(built, result, hotremove_verify)


#: -EAGAIN attempts on a buffer another task holds locked: ASYNC only trylocks — ten passes
#: per 6.x round; the first round moves the other pages, the second moves nothing, and while
#: the offline rescans the holder lets go; 6.12's three ASYNC passes come first even in SYNC;
#: SYNC_LIGHT and SYNC sleep on an uptodate buffer.
LOCKED_BUFFER_EAGAIN = {
    ("2004", "async"): 1,
    ("2004", "sync_light"): 0,
    ("2004", "sync"): 0,
    ("6.1", "async"): 20,
    ("6.1", "sync_light"): 0,
    ("6.1", "sync"): 0,
    ("6.12", "async"): 20,
    ("6.12", "sync_light"): 3,
    ("6.12", "sync"): 3,
}


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
@pytest.mark.parametrize("mode", MODES)
def test_buffer_locked_by_another_task(
    mode, kernel, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode, kernel=kernel)
    mapping, page = region_pages(built, lambda m, p: True)[0]
    index = page.index
    bh = page_buffers(page)[1]
    lock_buffer_elsewhere(built.machine, bh)

    result = hotremove_offline(built)

    assert result.retries.get("-EAGAIN", 0) == LOCKED_BUFFER_EAGAIN[(kernel, mode)]
    assert bh.b_page == mapping.i_pages[index] != page
    assert not bh.b_state & BH_Lock
    finish(built, result, hotremove_verify)


@pytest.mark.parametrize("mode", MODES)
def test_extra_reference_held_forever_fails_busy_and_rolls_back_in_the_seed(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode, kernel="2004", strategy="writeback")
    mapping, page = region_pages(built, lambda m, p: True)[0]
    pin_page(built.machine, page, release_after=0)

    result = hotremove_offline(built)

    assert result.failed == [
        {"pfn": page.pfn, "reason": "busy: extra reference", "errno": "-EAGAIN"}
    ]
    assert "gave up after 3 rounds" in result.reason
    assert built.machine.memory.block_state[REGION] == ONLINE
    assert mapping.i_pages[page.index] == page, "the held page stays where it was"
    finish(built, result, hotremove_verify, offlined=False)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_extra_reference_held_forever_spins_until_the_signal(
    kernel, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, "sync", kernel=kernel)
    mapping, page = region_pages(built, lambda m, p: True)[0]
    pin_page(built.machine, page, release_after=0)
    started = built.machine.clock.now

    result = hotremove_offline(built)

    assert result.failed == [
        {"pfn": page.pfn, "reason": "busy: extra reference", "errno": "-EINTR"}
    ]
    assert result.reason.startswith("signal backoff (-EINTR): stopped after 120 s")
    assert built.machine.clock.now - started >= 120, "the offline spun for the whole timeout"
    assert result.failed_attempts > 1000 and result.spun_rounds > 0
    assert built.machine.memory.block_state[REGION] == ONLINE
    assert mapping.i_pages[page.index] == page, "the held page stays where it was"
    finish(built, result, hotremove_verify, offlined=False)


@pytest.mark.parametrize("mode", MODES)
def test_extra_reference_released_after_two_passes_then_moves(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode)
    mapping, page = region_pages(built, lambda m, p: True)[0]
    index = page.index
    pin_page(built.machine, page, release_after=2)
    result = hotremove_offline(built)
    assert result.retries["-EAGAIN"] == 2
    assert mapping.i_pages[index] != page
    finish(built, result, hotremove_verify)


@pytest.mark.parametrize("mode", MODES)
def test_journal_held_buffers_are_busy_until_sync_on_6_12(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    """6.12: ``buffer_migrate_folio_norefs`` refuses a buffer jbd2 holds (its journal_head
    takes a reference) until the journal cleans its checkpoint list — which an idle
    filesystem never does: the offline spins until the signal. The data stays intact."""
    built = build(
        hotremove_build, mode, {"type": "ext3", "options": ["data=journal"]}, kernel="6.12"
    )
    held = region_pages(built, lambda m, p: any(bh.b_count for bh in page_buffers(p)))
    assert held
    result = hotremove_offline(built)
    assert result.classes["journal_held"]["failed"] == len(held)
    assert {f["reason"] for f in result.failed} == {"busy: buffer held by jbd2 (journal_head)"}
    assert result.reason.startswith("signal backoff (-EINTR)")
    finish(built, result, hotremove_verify, offlined=False)


@pytest.mark.parametrize("kernel", ["2004", "6.1"])
def test_journal_held_buffers_are_written_back_by_the_fallback(
    kernel, hotremove_build, hotremove_offline, hotremove_verify
):
    """No ``migrate_folio`` for journalled data (2004's ext3, 6.1's ext4): the fallback writes
    the dirty pages back, the journal lets the clean buffers go, the pages move."""
    built = build(
        hotremove_build, "sync", {"type": "ext3", "options": ["data=journal"]}, kernel=kernel
    )
    held = region_pages(built, lambda m, p: any(bh.b_count for bh in page_buffers(p)))
    assert held
    result = hotremove_offline(built)
    assert result.classes["journal_held"]["migrated"] == len(held)
    assert result.written_back >= 1
    finish(built, result, hotremove_verify)


@pytest.mark.parametrize("mode", MODES)
def test_nobh_pages_plain_migration(mode, hotremove_build, hotremove_offline, hotremove_verify):
    built = build(hotremove_build, mode, {"type": "ext2", "options": ["nobh"]})
    pages = region_pages(built, lambda m, p: True)
    assert pages and not any(p.flags & PG_private for _, p in pages)
    result = hotremove_offline(built)
    assert result.classes["file_nobh"]["migrated"] == len(pages)
    assert built.machine.io.write_requests == 0
    finish(built, result, hotremove_verify)


def anon_in_region(built):
    memory = built.machine.memory
    vma = built.machine.anon_vmas[0]
    return vma, {v: p for v, p in vma.ptes.items() if memory.block_of(p) == REGION}


@pytest.mark.parametrize("mode", MODES)
def test_mapped_anon_swapcache_and_mlocked_pages_move_with_their_ptes(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode, anon="2MiB", swapcache=0.3, mlocked=0.3)
    vma, before = anon_in_region(built)
    memory = built.machine.memory
    swap = {v for v, p in before.items() if memory.pages[p].flags & PG_swapcache}
    locked = {v for v, p in before.items() if memory.pages[p].flags & PG_mlocked}
    assert swap and locked and len(swap | locked) < len(before)

    result = hotremove_offline(built)

    for vpn, old in before.items():
        new = memory.pages[vma.ptes[vpn]]
        assert new.pfn != old and memory.block_of(new.pfn) != REGION and new.mapping is vma
        assert bool(new.flags & PG_swapcache) == (vpn in swap)
        assert bool(new.flags & PG_mlocked) == bool(new.flags & PG_unevictable) == (vpn in locked)
        if vpn in swap:
            assert built.machine.swap_cache.i_pages[new.private] == new
    assert result.classes["mlocked"]["migrated"] == len(locked)
    assert result.per_aops["swap_aops"].migrated == len(swap - locked) + len(swap & locked)
    finish(built, result, hotremove_verify)


def place_thp_in_region(built):
    memory = built.machine.memory
    block = memory.blocks[REGION]
    nr = 1 << HPAGE_PMD_ORDER
    start = next(
        s
        for s in range(block.start_pfn, block.end_pfn, nr)
        if all(memory.is_free(p) for p in range(s, s + nr))
    )
    head = memory.alloc_compound_at(start, HPAGE_PMD_ORDER)
    vma = AnonVma("thp")
    built.machine.anon_vmas.append(vma)
    add_anon_folio(built.machine, built.golden, vma, head, 0, np.random.default_rng(3))
    return vma, head


@pytest.mark.parametrize("mode", MODES)
def test_huge_page_moves_as_one_aligned_folio(
    mode, hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario({"type": "ext2", "files": 4}, memory="32MiB", mode=mode, cached=0.5)
    )
    vma, head = place_thp_in_region(built)
    result = hotremove_offline(built)
    new = vma.ptes[0]
    assert new != head.pfn
    assert new % 512 == 0 and built.machine.memory.block_of(new) != REGION
    assert [vma.ptes[i] for i in range(512)] == list(range(new, new + 512))
    assert result.classes["thp"] == {"pages": 1, "migrated": 1, "failed": 0}
    finish(built, result, hotremove_verify)


def fill_every_aligned_range(built):
    """One busy frame in every 2 MiB range outside the region: no aligned range is left."""
    memory = built.machine.memory
    return [
        memory.alloc_page_at(next(p for p in range(s, s + 512) if memory.is_free(p)))
        for s in range(0, memory.nr_pages, 512)
        if memory.block_of(s) != REGION and any(memory.is_free(p) for p in range(s, s + 512))
    ]


def release(built, hogs):
    for hog in hogs:
        hog._refcount = 0
        built.machine.memory.free_page(hog)


def test_huge_page_without_a_free_aligned_range_is_split_and_moves(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """v6.x ``migrate_pages``: -ENOMEM for a large folio → ``try_split_folio``; its 512 base
    pages fit in the scattered free frames and move, each with its own PTE."""
    built = hotremove_build(small_scenario({"type": "ext2", "files": 4}, cached=0.5))
    vma, _head = place_thp_in_region(built)
    hogs = fill_every_aligned_range(built)
    result = hotremove_offline(built)
    assert result.offlined, result.reason
    assert result.thp_split == 1
    memory = built.machine.memory
    new = [vma.ptes[i] for i in range(512)]
    assert all(memory.block_of(p) != REGION for p in new)
    assert all(memory.pages[p].order == 0 and memory.pages[p]._mapcount == 1 for p in new)
    release(built, hogs)
    finish(built, result, hotremove_verify)


def test_huge_page_without_a_free_aligned_range_is_enomem_in_the_seed(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(
        small_scenario(
            {"type": "ext2", "files": 4}, cached=0.5, kernel="2004", strategy="writeback"
        )
    )
    vma, head = place_thp_in_region(built)
    hogs = fill_every_aligned_range(built)
    result = hotremove_offline(built)
    assert result.failed == [{"pfn": head.pfn, "reason": "-ENOMEM", "errno": "-ENOMEM"}]
    memory = built.machine.memory
    assert memory.block_state[REGION] == ONLINE and vma.ptes[0] == head.pfn
    release(built, hogs)
    finish(built, result, hotremove_verify, offlined=False)


@pytest.mark.parametrize("kind", [PG_reserved, PG_slab, PG_pgtable])
@pytest.mark.parametrize("mode", MODES)
def test_unmovable_kernel_pages_fail_isolation(
    mode, kind, hotremove_build, hotremove_offline, hotremove_verify
):
    built = build(hotremove_build, mode)
    memory = built.machine.memory
    block = memory.blocks[REGION]
    pfn = next(p for p in range(block.start_pfn, block.end_pfn) if memory.is_free(p))
    memory.alloc_page_at(pfn).flags |= kind
    result = hotremove_offline(built)
    assert result.failed == [{"pfn": pfn, "reason": "unmovable", "errno": "-EBUSY"}]
    assert result.reason.startswith("failure to isolate range")
    assert result.passes == 0 and memory.block_state[REGION] == ONLINE
    finish(built, result, hotremove_verify, offlined=False)


def test_swap_cache_page_keeps_its_entry(hotremove_build, hotremove_offline, hotremove_verify):
    built = build(hotremove_build, "sync", anon="1MiB")
    vma, before = anon_in_region(built)
    vpn, pfn = next(iter(before.items()))
    page = built.machine.memory.pages[pfn]
    add_to_swap_cache(built.machine, page)
    entry = page.private
    result = hotremove_offline(built)
    new = built.machine.memory.pages[vma.ptes[vpn]]
    assert built.machine.swap_cache.i_pages[entry] == new and new.private == entry
    finish(built, result, hotremove_verify)


def test_a_failed_migration_leaves_a_mapped_anon_page_and_a_cached_page_as_they_were(
    hotremove_build, hotremove_offline, hotremove_verify
):
    """An extra reference makes ``migrate_folio`` fail *after* ``migrate_folio_unmap``
    replaced the anon page's PTEs by migration entries: the undo must point the PTEs at the
    page again (``remove_migration_ptes(src, src)``), give back the mapping's reference and
    put it back on the LRU — and likewise for a page-cache page, minus the PTEs."""
    built = build(hotremove_build, "sync", anon="1MiB", kernel="6.12")
    vma, mapped = anon_in_region(built)
    vpn, pfn = next(iter(mapped.items()))
    memory = built.machine.memory
    anon = memory.pages[pfn]
    _, cached = region_pages(built, lambda m, p: True)[0]
    pin_page(built.machine, anon, release_after=0)
    pin_page(built.machine, cached, release_after=0)
    before = {p.pfn: (p._refcount, p._mapcount, bool(p.flags & PG_lru)) for p in (anon, cached)}
    assert before[anon.pfn] == (2, 1, True) and before[cached.pfn][2]

    result = hotremove_offline(built)

    assert {f["pfn"] for f in result.failed} == {anon.pfn, cached.pfn}
    after = {p.pfn: (p._refcount, p._mapcount, bool(p.flags & PG_lru)) for p in (anon, cached)}
    assert after == before, "refcount, mapcount and PG_lru as before the attempts"
    assert vma.ptes[vpn] == anon.pfn, "the PTE points at the page again, not a migration entry"
    finish(built, result, hotremove_verify, offlined=False)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
@pytest.mark.parametrize("mode", ["sync_light", "sync"])
def test_a_locked_page_that_is_not_uptodate_is_not_waited_for_in_sync_light(
    mode, kernel, hotremove_build, hotremove_offline, hotremove_verify
):
    """``migrate_folio_unmap``: from v6.5 ("migrate_pages: Avoid blocking for IO in
    MIGRATE_SYNC_LIGHT") SYNC_LIGHT sleeps on a contended page lock only when the page is
    uptodate — a !uptodate locked page suggests a read in flight (-EAGAIN); SYNC waits. 6.1's
    ``__unmap_and_move`` waited in SYNC_LIGHT too (forced from pass 3), so both modes move the
    page in the first round there; 6.12's SYNC_LIGHT moves it only after the holder let go,
    in a later round."""
    built = build(hotremove_build, mode, kernel=kernel)
    mapping, page = region_pages(built, lambda m, p: True)[0]
    index = page.index
    page.flags = (page.flags | PG_locked) & ~PG_uptodate  # a read is in flight
    held = page

    def read_completes() -> None:
        held.flags = (held.flags & ~PG_locked) | PG_uptodate

    built.machine.waiters[page] = read_completes

    result = hotremove_offline(built)

    assert mapping.i_pages[index] != page
    if mode == "sync" or kernel == "6.1":
        assert result.failed_attempts == 0, "waited for the lock in the first round"
    else:
        assert result.failed_attempts >= 1, "backed off, moved in a later round"
    finish(built, result, hotremove_verify)
