"""Verification is the truth test: sync, e2fsck -fn, every file read back from the image."""

from __future__ import annotations

from hotremove.model.buffer_head import BH_Dirty, page_buffers
from hotremove.model.page import PAGE_SIZE, PG_dirty
from hotremove.testing import small_scenario


def test_partial_dirty_workload_verifies_clean_after_sync(hotremove_build, hotremove_verify):
    built = hotremove_build(
        small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5, dirty_buffers="partial")
    )
    dirty_pages = [
        p for m in built.machine.mappings for p in m.i_pages.values() if p.flags & PG_dirty
    ]
    assert dirty_pages
    assert any(not all(bh.b_state & BH_Dirty for bh in page_buffers(p)) for p in dirty_pages), (
        "partial: some dirty pages keep clean buffers"
    )

    verdict = hotremove_verify(built)

    assert verdict.ok, verdict.as_dict()
    assert verdict.files_checked == 16 and verdict.mismatches == []
    assert all(f["ok"] for f in verdict.fsck.values())
    assert built.machine.io.write_requests > 0, "sync wrote the dirty buffers"
    assert not any(p.flags & PG_dirty for m in built.machine.mappings for p in m.i_pages.values())


def test_image_is_untouched_until_sync(hotremove_build):
    """Writes land in the page cache only: the image still holds the original bytes."""
    from hotremove.extfs import read_files
    from hotremove.workload import file_contents

    scenario = small_scenario({"type": "ext2"}, dirty=1.0)
    built = hotremove_build(scenario)
    originals = file_contents(scenario.workload.seed, 0, scenario.filesystem[0])
    on_disk = read_files(built.images["fs0"], list(originals))
    assert on_disk == originals
    assert any(built.golden.files[("fs0", path)] != data for path, data in originals.items())


def test_one_corrupted_byte_is_reported_with_file_and_offset(hotremove_build, hotremove_verify):
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5))
    mapping, page, bh = next(
        (m, p, bh)
        for m in built.machine.mappings
        for p in m.i_pages.values()
        if p.flags & PG_dirty
        for bh in page_buffers(p)
        if bh.b_state & BH_Dirty
    )
    frame = built.machine.memory.frame(page.pfn)
    frame[bh.b_offset + 17] ^= 0xFF  # a bit flip in the page cache, behind the kernel's back

    verdict = hotremove_verify(built)

    assert not verdict.ok
    offset = page.index * PAGE_SIZE + bh.b_offset + 17
    assert verdict.mismatches == [{"fs": "fs0", "file": mapping.host.path, "offset": offset}]
    assert all(f["ok"] for f in verdict.fsck.values()), "the filesystem itself is still sound"


def test_anon_pages_are_checked_by_content(hotremove_build, hotremove_verify):
    built = hotremove_build(small_scenario({"type": "ext2"}, anon="256KiB"))
    vma = built.machine.anon_vmas[0]
    assert len(vma.ptes) == 64
    built.machine.memory.frame(vma.ptes[3])[0] ^= 1
    verdict = hotremove_verify(built)
    assert verdict.anon_checked == 64
    assert verdict.mismatches == [{"anon": "anon", "vpn": 3, "offset": 0}]
