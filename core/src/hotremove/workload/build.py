"""Scenario → populated machine, and the golden model of what the disk must hold.

The builder makes the real images (each with its filesystem type's own tools), reads each
file's block map from them, mounts them (the type's ``mount``, then the ``hotremove_mount``
hook), caches file pages in frames with what the type's a_ops says a page carries
(buffer_heads on the real block numbers, a folio state, or nothing), applies the workload's writes
**only in the page cache** (dirty buffers, PG_dirty) and records, independently of the
simulated kernel, what every file must contain once everything is written back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from hotremove.errors import WorkloadError
from hotremove.fs.blockread import BlockReader
from hotremove.fs.fs_writeback import start_flusher
from hotremove.fs.fstype import FilesystemType
from hotremove.fs.registry import resolve
from hotremove.hooks import Hooks, PluginError
from hotremove.kernels import Kernel, get_kernel
from hotremove.model.address_space import AddressSpace, AddressSpaceOps, Inode, SuperBlock
from hotremove.model.blockdev import BlockDevice
from hotremove.model.cost import preset as device_preset
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.scenario import FilesystemConfig, Scenario
from hotremove.workload.anon import alloc_thp, anon_pages
from hotremove.workload.golden import Golden
from hotremove.workload.images import cached_image, file_contents, wait_for_records
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
    fs_types = filesystem_types(scenario, hooks)
    for fs_index, cfg in enumerate(scenario.filesystem):
        fs_type = fs_types[cfg.type]
        files = file_contents(wl.seed, fs_index, cfg)
        image = workdir / f"{cfg.name}.img"
        source, maps, journal = cached_image(
            image_cache, image, cfg, wl.seed, fs_index, files, fs_type
        )
        images[cfg.name] = image
        bdev = BlockDevice(
            image, cfg.block_size, machine.preset, machine.clock, machine.io, source=source
        )
        sb = SuperBlock(
            s_id=cfg.name,
            s_type=cfg.type,
            s_blocksize=cfg.block_size,
            s_bdev=bdev,
            data_mode=fs_type.data_mode(cfg),
            options=tuple(cfg.options),
            journal_blocks=journal,
        )
        machine.superblocks.append(sb)
        fs_type.mount(machine, sb)  # the filesystem's own state (a journal) first ...
        hooks.mount(machine, sb)  # ... then every plugin hears of the mount
        a_ops = aops_of(fs_type, cfg, kernel)
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
    wait_for_records()  # a new cache entry is recorded before anyone may evict or reuse it
    log.info(
        "machine_built",
        pages=memory.nr_pages - memory.nr_free(),
        mappings=len(machine.mappings),
        blocks=len(memory.blocks),
    )
    return Built(scenario, machine, golden, images)


def filesystem_types(scenario: Scenario, hooks: Hooks) -> dict[str, FilesystemType]:
    """The type of every filesystem the scenario names — the plugin set's, else an installed
    one — with its host tools found (a missing program is one line naming the Debian package,
    before anything is built)."""
    types = {cfg.type: resolve(cfg.type, hooks.fs_types) for cfg in scenario.filesystem}
    for fs_type in types.values():
        fs_type.require_tools()
    return types


def aops_of(fs_type: FilesystemType, cfg: FilesystemConfig, kernel: Kernel) -> AddressSpaceOps:
    """The table ``kernel`` gives a regular file of ``cfg`` (the type's answer, checked)."""
    ops = fs_type.aops(cfg, kernel)
    if not isinstance(ops, AddressSpaceOps):
        raise PluginError(
            f"filesystem type {fs_type.name!r}: aops() returned {type(ops).__name__}, not an "
            "AddressSpaceOps"
        )
    return ops
