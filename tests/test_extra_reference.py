"""A page someone holds an extra reference on stays put — on every path.

The expected-refcount check (``folio_expected_refs`` before the copy, ``folio_ref_freeze``
in ``folio_migrate_mapping``) is what keeps migration from moving a page another task is
using (a GUP pin, a concurrent lookup): the page must stay in its frame, in the page cache,
with its bytes and its buffers, and the offline must fail on it ("busy"). A strategy or a
batched path that skipped the check would move it; this test names every path a page-cache
page can take: buffer_migrate_folio, migrate_folio (no buffers), the writeback fallback,
``_norefs``, each per page and batched, on the classic and the batched ``migrate_pages``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hotremove.mm.memory_block import offline
from hotremove.model.buffer_head import page_buffers
from hotremove.model.page import PG_private
from hotremove.testing import small_scenario
from hotremove.workload import build
from hotremove.workload.planted import pin_page

CASES = {
    "buffer_migrate_folio": ({"type": "ext2"}, "6.12"),
    "migrate_folio (nobh)": ({"type": "ext2", "options": ["nobh"]}, "6.1"),
    "fallback_migrate_folio": ({"type": "ext4", "options": ["data=journal"]}, "6.1"),
    "buffer_migrate_folio_norefs": ({"type": "ext4", "options": ["data=journal"]}, "6.12"),
    "classic passes": ({"type": "ext4"}, "6.1"),
}


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "per-page"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_page_with_an_extra_reference_stays_put(case, batching, hotremove_plugins, tmp_path):
    fs, kernel = CASES[case]
    scn = small_scenario({"files": 64, **fs}, kernel=kernel, dirty=0.3).with_overrides(
        remove={"timeout": 5.0}
    )
    built = build(scn, hotremove_plugins.hooks, tmp_path)
    machine = built.machine
    memory = machine.memory
    block = memory.blocks[scn.remove.blocks[0]]
    in_block = [
        (m, index, page)
        for m in machine.mappings
        for index, page in m.i_pages.items()
        if block.start_pfn <= page.pfn < block.end_pfn
    ]
    assert len(in_block) > 50
    pinned = in_block[::7]  # never let go: pin_page(release_after=0)
    before = {}
    for _, _, page in pinned:
        before[page.pfn] = (
            page._refcount + 1,
            memory.frames[page.pfn].copy(),
            [bh.b_blocknr for bh in page_buffers(page)] if page.flags & PG_private else [],
        )
        pin_page(machine, page, 0)

    result = offline(
        machine,
        hotremove_plugins.hooks,
        list(scn.remove.blocks),
        batching=batching,
        **scn.offline_kwargs(),
    )

    assert not result.offlined
    reasons = {f["pfn"]: f["reason"] for f in result.failed}
    # busy: the extra reference (or, first, a journal_head jbd2 still has on a buffer)
    assert all(reasons.get(pfn, "").startswith("busy: ") for pfn in before), reasons
    for mapping, index, page in pinned:
        refs, data, blocks = before[page.pfn]
        assert mapping.i_pages[index].pfn == page.pfn, f"{case}: a pinned page moved"
        assert np.array_equal(memory.frames[page.pfn], data)
        # the fallback's filemap_release_folio may free the buffers of a clean page first
        # (try_to_free_buffers does not look at the page's references): only ->private's
        # reference goes with them, then migrate_folio's refcount check refuses the move
        released = bool(blocks) and not page.flags & PG_private
        assert page._refcount == refs - released
        if blocks and not released:
            assert [bh.b_blocknr for bh in page_buffers(page)] == blocks
            assert all(bh.b_page == page for bh in page_buffers(page))
    others = [(m, i) for m, i, p in in_block if p.pfn not in reasons]
    assert len(others) > len(pinned)
    assert all(not block.start_pfn <= m.i_pages[i].pfn < block.end_pfn for m, i in others), (
        "every page that did not fail left the block"
    )


def test_extra_reference_is_refused_before_the_buffers_are_locked(hotremove_plugins, tmp_path):
    """``__buffer_migrate_folio`` checks the expected refcount *before* it locks the buffers
    (mm/migrate.c, 6.1 and 6.12): a pinned page whose buffer another task holds locked gets
    -EAGAIN at once in MIGRATE_SYNC — it does not sleep on the buffer lock only to fail the
    refcount freeze afterwards — and nothing on either page changes."""
    from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MigrateControl
    from hotremove.model.buffer_head import BH_Lock
    from hotremove.model.migrate_mode import Errno, MigrateMode
    from hotremove.model.page import PG_locked
    from hotremove.workload.planted import lock_buffer_elsewhere

    scn = small_scenario({"type": "ext2"}, kernel="6.12")
    built = build(scn, hotremove_plugins.hooks, tmp_path)
    machine = built.machine
    mapping = machine.mappings[0]
    src = next(p for p in mapping.i_pages.values() if p.flags & PG_private)
    pin_page(machine, src, 0)
    held = page_buffers(src)[1]
    lock_buffer_elsewhere(machine, held, hold_seconds=1.0)
    dst = machine.memory.alloc_page()
    src.flags |= PG_locked  # the caller's contract: both folios locked, src isolated
    dst.flags |= PG_locked
    src._refcount += 1
    refs, clock = src._refcount, machine.clock.now
    mc = MigrateControl(
        frames=machine.memory.frames,
        clock=machine.clock,
        vmstat=machine.vmstat,
        copy_seconds=machine.preset.copy_seconds(4096),
    )

    rc = BUFFER_MIGRATE_FOLIO.migrate_folio(mc, mapping, dst, src, MigrateMode.SYNC)

    assert rc is Errno.EAGAIN
    assert machine.clock.now == clock, "it slept on a buffer lock before checking refs"
    assert held.b_state & BH_Lock and held in machine.waiters, "the other task still holds it"
    assert src._refcount == refs and src.flags & PG_private and dst._refcount == 1
    assert all(bh.b_page == src for bh in page_buffers(src))
    assert not machine.memory.frames[dst.pfn].any(), "nothing was copied"
