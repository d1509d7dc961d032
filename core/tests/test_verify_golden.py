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
    from hotremove.fs.registry import known
    from hotremove.workload import file_contents

    scenario = small_scenario({"type": "ext2"}, dirty=1.0)
    built = hotremove_build(scenario)
    cfg = scenario.filesystem[0]
    originals = file_contents(scenario.workload.seed, 0, cfg)
    on_disk = known("ext2").read_files(built.images["fs0"], cfg, list(originals))
    assert on_disk == originals
    assert any(built.golden.files[("fs0", path)] != data for path, data in originals.items())


def test_one_corrupted_byte_is_reported_with_file_and_offset(hotremove_build, hotremove_verify):
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5))
    mapping, page, bh, _ = _dirty_buffer(built)
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


def _dirty_buffer(built):
    """A dirty buffer of a file: (mapping, page, bh, logical block)."""
    mapping, page, bh = next(
        (m, p, bh)
        for m in built.machine.mappings
        for p in m.i_pages.values()
        if p.flags & PG_dirty
        for bh in page_buffers(p)
        if bh.b_state & BH_Dirty
    )
    bs = mapping.host.i_sb.s_blocksize
    return mapping, page, bh, page.index * (PAGE_SIZE // bs) + bh.b_offset // bs


def test_a_wrong_block_map_is_caught_by_the_images_own_metadata(
    hotremove_build, hotremove_verify, monkeypatch
):
    """The simulator believes a block of a file lives elsewhere (its map and the buffer agree
    on a free block), so sync writes the new bytes there: read through that wrong map the file
    looks right; the image's inodes (debugfs stat) say where it really is, and there the old
    bytes are still. No debugfs sample: the map check alone must catch it."""
    import hotremove.sim.verify as verify_mod
    from hotremove.fs.blockread import BlockReader

    monkeypatch.setattr(verify_mod, "SAMPLE", 0)
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5))
    mapping, _page, bh, logical = _dirty_buffer(built)
    in_use = {b for m in built.machine.mappings for b in m.host.block_map}
    free = 8000  # an 8 MiB image: far past the few hundred blocks its files use
    assert free not in in_use
    bh.b_blocknr = free
    mapping.host.block_map[logical] = free

    verdict = hotremove_verify(built)

    assert not verdict.ok
    [mismatch] = verdict.mismatches
    assert mismatch["fs"] == "fs0" and mismatch["file"] == mapping.host.path
    assert logical * 1024 <= mismatch["offset"] < (logical + 1) * 1024
    assert all(f["ok"] for f in verdict.fsck.values()), "a free block written: fsck is clean"
    want = built.golden.files[("fs0", mapping.host.path)]
    with BlockReader(built.images["fs0"], 1024) as reader:
        assert reader.read(mapping.host.block_map, len(want)) == want, (
            "through the simulator's own (wrong) map the file reads back right"
        )


def test_a_corrupted_block_on_disk_is_caught_by_the_block_reader(
    hotremove_build, hotremove_verify, monkeypatch
):
    """A clean block of a file damaged in the image behind the kernel's back (sync will not
    rewrite it): the block reader finds it, debugfs confirms it, file and offset exact."""
    import hotremove.sim.verify as verify_mod

    monkeypatch.setattr(verify_mod, "SAMPLE", 0)
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5))
    mapping, page = next(
        (m, p) for m in built.machine.mappings for p in m.i_pages.values() if not p.flags & PG_dirty
    )
    logical = page.index * (PAGE_SIZE // 1024) + 2
    physical = mapping.host.block_map[logical]
    built.machine.materialise_images()
    with open(built.images["fs0"], "r+b") as image:
        image.seek(physical * 1024 + 5)
        byte = image.read(1)
        image.seek(physical * 1024 + 5)
        image.write(bytes([byte[0] ^ 0x5A]))

    verdict = hotremove_verify(built)

    assert not verdict.ok
    assert verdict.mismatches == [
        {"fs": "fs0", "file": mapping.host.path, "offset": logical * 1024 + 5}
    ]
    assert verdict.files_checked == 16


def test_the_debugfs_sample_cross_checks_the_block_reader(
    hotremove_build, hotremove_verify, monkeypatch
):
    """Were the block reader blind (it finds nothing wrong), the debugfs dump of the sample
    still reads the damaged file through the image's metadata."""
    import hotremove.sim.verify as verify_mod
    from hotremove.fs import blockread

    monkeypatch.setattr(verify_mod, "SAMPLE", 16)
    built = hotremove_build(small_scenario({"type": "ext2", "block_size": 1024}, dirty=0.5))
    mapping = built.machine.mappings[3]
    physical = mapping.host.block_map[0]
    built.machine.materialise_images()
    with open(built.images["fs0"], "r+b") as image:
        image.seek(physical * 1024)
        byte = image.read(1)
        image.seek(physical * 1024)
        image.write(bytes([byte[0] ^ 1]))
    golden = built.golden.files
    monkeypatch.setattr(
        blockread.BlockReader,
        "read",
        lambda self, blocks, size: golden[("fs0", path_of[tuple(blocks)])],
    )
    path_of = {tuple(m.host.block_map): m.host.path for m in built.machine.mappings}

    verdict = hotremove_verify(built)

    assert verdict.mismatches == [{"fs": "fs0", "file": mapping.host.path, "offset": 0}]
