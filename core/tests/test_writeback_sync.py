"""``sync_mapping`` (arrays, a whole file at once) writes exactly what the per-page
``dirty_blocks`` + ``submit_block_runs`` + ``clear_page_dirty`` path writes: the same bytes on
the image, the same requests and sizes, the same simulated time, the same flags after."""

from __future__ import annotations

import hashlib

import pytest

from hotremove.mm.page_writeback import (
    clear_page_dirty,
    dirty_blocks,
    submit_block_runs,
    sync_mapping,
)
from hotremove.testing import small_scenario


def _per_page_sync(machine) -> int:
    requests = 0
    frames = machine.memory.frames
    for mapping in machine.mappings:
        pages = [mapping.i_pages[i] for i in sorted(mapping.dirty_tags) if i in mapping.i_pages]
        blocks = [block for page in pages for block in dirty_blocks(frames, mapping, page)]
        requests += submit_block_runs(mapping.host.i_sb.s_bdev, blocks)
        for page in pages:
            clear_page_dirty(mapping, page)
    return requests


def _state(built, requests: int) -> tuple:
    machine = built.machine
    for sb in machine.superblocks:
        sb.s_bdev.flush()
    images = {k: hashlib.md5(v.read_bytes()).hexdigest() for k, v in built.images.items()}
    return (
        requests,
        dict(machine.io.write_sizes),
        machine.clock.io_seconds,
        images,
        machine.memory.pages.flags.tobytes(),
        machine.memory.bh_pool.b_state.tobytes(),
        [sorted(m.dirty_tags) for m in machine.mappings],
    )


@pytest.mark.parametrize(
    "fs",
    [
        {"type": "ext2", "block_size": 1024},
        {"type": "ext2", "block_size": 4096},
        {"type": "ext4", "block_size": 1024},
    ],
    ids=["ext2-1k", "ext2-4k", "ext4-1k"],
)
def test_sync_mapping_writes_what_the_per_page_path_writes(fs, hotremove_build):
    states = []
    for whole_file in (True, False):
        built = hotremove_build(small_scenario(fs, dirty=0.6))
        machine = built.machine
        machine.materialise_images()
        assert any(m.dirty_tags for m in machine.mappings), "something to write"
        if whole_file:
            frames = machine.memory.frames
            requests = sum(sync_mapping(frames, m) for m in machine.mappings)
        else:
            requests = _per_page_sync(machine)
        states.append(_state(built, requests))
    assert states[0][0] > 0
    assert states[0] == states[1]
