"""Scenario → populated machine, and the golden model of what the disk must hold.

The builder makes the real images (mke2fs), reads each file's block map from them, caches file
pages in frames with buffer_heads on the real block numbers, applies the workload's writes
**only in the page cache** (dirty buffers, PG_dirty) and records, independently of the
simulated kernel, what every file must contain once everything is written back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from hotremove.errors import WorkloadError
from hotremove.extfs.blockread import BlockReader
from hotremove.fs.fs_writeback import start_flusher
from hotremove.hooks import Hooks
from hotremove.kernels import get_kernel
from hotremove.model.address_space import AddressSpace, Inode, SuperBlock
from hotremove.model.aops import select_aops
from hotremove.model.blockdev import BlockDevice
from hotremove.model.cost import preset as device_preset
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.scenario import Scenario
from hotremove.workload.anon import alloc_thp, anon_pages
from hotremove.workload.golden import Golden
from hotremove.workload.images import cached_image, file_contents
from hotremove.workload.pagecache import FrameAllocator, cache_file, dirty_file
from hotremove.workload.planted import plant_page_classes, unmovable_pages

log = structlog.get_logger("hotremove.workload")


@dataclass
class Built:
    scenario: Scenario
    machine: Machine
    golden: Golden
    images: dict[str, Path]


def write_files(
    machine: Machine,
    golden: Golden,
    rng: np.random.Generator,
    share: float,
    how: str,
    seconds: float,
) -> None:
    """The workload's writes, file after file; with ``seconds``, the clock moves on by an
    equal step after each file and the kernel timers that fall due run (jbd2 commits a
    transaction 5 s after it started, so a long write phase is several transactions)."""
    mappings = machine.mappings
    start = machine.clock.now
    for done, mapping in enumerate(mappings, start=1):
        dirty_file(machine, mapping, golden, rng, share, how)
        if seconds:
            machine.timers.idle_until(start + seconds * done / len(mappings))
    machine.writes_end = machine.clock.now


def build(
    scenario: Scenario, hooks: Hooks, workdir: Path, *, image_cache: Path | None = None
) -> Built:
    """Make the images and the machine the scenario describes (see module doc).
    ``image_cache``: reuse images made earlier with identical parameters (large runs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    wl = scenario.workload
    rng = np.random.default_rng(wl.seed)
    memory = PhysicalMemory(scenario.memory.size, scenario.memory.block_size)
    kernel = get_kernel(scenario.kernel.version)
    machine = Machine(memory=memory, preset=device_preset(scenario.device.preset), kernel=kernel)
    golden = Golden()
    frames = FrameAllocator(memory, wl.placement, rng)
    # huge pages first, as a booted system gets them: later, fragmentation leaves no room
    huge = [alloc_thp(memory, rng, wl.placement) for _ in range(wl.thp)]
    images: dict[str, Path] = {}
    for fs_index, cfg in enumerate(scenario.filesystem):
        files = file_contents(wl.seed, fs_index, cfg)
        image = workdir / f"{cfg.name}.img"
        source, maps, journal = cached_image(image_cache, image, cfg, wl.seed, fs_index, files)
        images[cfg.name] = image
        bdev = BlockDevice(
            image, cfg.block_size, machine.preset, machine.clock, machine.io, source=source
        )
        sb = SuperBlock(
            s_id=cfg.name,
            s_type=cfg.type,
            s_blocksize=cfg.block_size,
            s_bdev=bdev,
            data_mode=cfg.data_mode,
            options=tuple(cfg.options),
            journal_blocks=journal,
        )
        machine.superblocks.append(sb)
        hooks.mount(machine, sb)
        a_ops = select_aops(cfg.type, cfg.options, cfg.data_mode, kernel.driver(cfg.type))
        # the page cache is read from the image, as the kernel's readahead would fill it
        # (one preadv per run of blocks, from the host's cache: faster than generating the
        # bytes again); the golden model makes each file from its seed when asked instead
        with BlockReader(source or image, cfg.block_size) as reader:
            for ino, path in enumerate(files, start=12):
                golden.files.add_generated((cfg.name, path), files.maker(path), cfg.file_size)
                inode = Inode(ino, path, cfg.file_size, sb, maps[path])
                mapping = AddressSpace(inode, a_ops)
                machine.mappings.append(mapping)
                data = reader.read(maps[path], cfg.file_size)
                if len(data) != cfg.file_size:
                    raise WorkloadError(f"{image.name}: {path} is cut short in the image")
                cache_file(machine, mapping, data, frames, rng, wl.cached)
    kcfg = scenario.kernel
    # the sysctls are set before the workload writes (the flusher may run during them)
    start_flusher(machine, kcfg.dirty_writeback_centisecs, kcfg.dirty_expire_centisecs)
    write_files(machine, golden, rng, wl.dirty, wl.dirty_buffers, wl.write_seconds)
    memory.bh_pool.shrink_to_fit()  # every ring exists: no spare capacity to carry
    plant_page_classes(machine, rng, wl)
    anon_pages(machine, golden, frames, rng, wl, huge)
    unmovable_pages(machine, frames, wl.unmovable, wl.unmovable_blocks)
    log.info(
        "machine_built",
        pages=memory.nr_pages - memory.nr_free(),
        mappings=len(machine.mappings),
        blocks=len(memory.blocks),
    )
    return Built(scenario, machine, golden, images)
