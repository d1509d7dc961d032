"""Scenario → populated machine, and the golden model of what the disk must hold.

The builder makes the real images (mke2fs), reads each file's block map from them, caches file
pages in frames with buffer_heads on the real block numbers, applies the workload's writes
**only in the page cache** (dirty buffers, PG_dirty) and records, independently of the
simulated kernel, what every file must contain once everything is written back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from hotremove.cost import preset as device_preset
from hotremove.errors import ScenarioError
from hotremove.extfs import block_maps, make_image
from hotremove.hooks import Hooks
from hotremove.model.address_space import AddressSpace, AnonVma, Inode, SuperBlock
from hotremove.model.aops import select_aops
from hotremove.model.blockdev import BlockDevice
from hotremove.model.buffer_head import (
    BH_Dirty,
    BH_Lock,
    BH_Mapped,
    BH_Uptodate,
    BufferHead,
    page_buffers,
)
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import (
    HPAGE_PMD_ORDER,
    PAGE_SIZE,
    Page,
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_mappedtodisk,
    PG_mlocked,
    PG_pgtable,
    PG_private,
    PG_reserved,
    PG_slab,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    folio_nr_pages,
)
from hotremove.scenario import FilesystemConfig, Scenario, WorkloadConfig
from hotremove.writeback import start_writeback

log = structlog.get_logger("hotremove.workload")


class WorkloadError(ScenarioError):
    """The scenario passed validation but the machine cannot hold it (names the key)."""


@dataclass
class Golden:
    """What must be true after a sync, kept apart from the simulated kernel."""

    files: dict[tuple[str, str], bytearray] = field(default_factory=dict)  # (fs, path) → bytes
    anon: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (vma, vpn) → digest


@dataclass
class Built:
    scenario: Scenario
    machine: Machine
    golden: Golden
    images: dict[str, Path]


def digest(data: np.ndarray | bytes) -> bytes:
    return hashlib.blake2b(bytes(data), digest_size=16).digest()


class FrameAllocator:
    """Where the workload's pages land: ``spread`` (random frames) or ``fill`` (lowest first)."""

    def __init__(self, memory: PhysicalMemory, placement: str, rng: np.random.Generator) -> None:
        self.memory = memory
        self._order = (
            rng.permutation(memory.nr_pages)
            if placement == "spread"
            else np.arange(memory.nr_pages, dtype=np.int64)
        )
        self._pos = 0  # frames before it in the order were taken or found in use

    def alloc(self) -> Page:
        return Page(self.memory.pages, int(self.alloc_many(1)[0]))

    def alloc_many(self, n: int) -> np.ndarray:
        """The next ``n`` free frames in placement order, allocated (one reference each)."""
        free = self.memory.free_map
        order = self._order
        got: list[np.ndarray] = []
        need = n
        while need:
            chunk = order[self._pos : self._pos + need]
            if not len(chunk):
                raise WorkloadError(
                    "memory.size: no free frame left for the workload (more pages than memory)"
                )
            self._pos += len(chunk)
            take = chunk[free[chunk] != 0]
            got.append(take)
            need -= len(take)
        pfns = np.concatenate(got) if got else np.zeros(0, np.int64)
        self.memory.alloc_pages_at(pfns)
        return pfns


def file_contents(seed: int, fs_index: int, cfg: FilesystemConfig) -> dict[str, bytearray]:
    """Deterministic file bytes: equal scenario, equal files (so images can be cached). The
    builder hands these very buffers to the golden model once the page cache is filled."""
    rng = np.random.default_rng([seed, fs_index, 0xF11E])
    words = -(-cfg.file_size // 8)  # raw 64-bit draws: ~5× faster than Generator.bytes
    return {
        f"f{i:05d}": bytearray(
            memoryview(rng.bit_generator.random_raw(words)).cast("B")[: cfg.file_size]
        )
        for i in range(cfg.files)
    }


def cached_image(
    cache: Path | None,
    image: Path,
    cfg: FilesystemConfig,
    seed: int,
    fs_index: int,
    files: dict[str, bytearray],
) -> tuple[Path | None, dict[str, list[int]]]:
    """``make_image`` at ``image``, or an identical image made before: the key covers every
    input of the image (filesystem settings, seed, position, e2fsprogs' output format).
    Returns the cached image to share copy-on-write (None: ``image`` was made in place) and
    the files' block maps (read once with debugfs, then kept next to the cached image)."""
    data_mode = cfg.data_mode if cfg.type != "ext2" else None
    if cache is None:
        make_image(image, cfg.type, cfg.block_size, cfg.size, files, data_mode=data_mode)
        return None, block_maps(image, list(files))
    key = hashlib.sha256(
        json.dumps([IMAGE_FORMAT, cfg.model_dump(), seed, fs_index], sort_keys=True).encode()
    ).hexdigest()[:24]
    cached = cache / f"{cfg.type}-{key}.img"
    maps_file = cached.with_suffix(".maps.npz")
    if not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        maps_file.unlink(missing_ok=True)
        make_image(cached, cfg.type, cfg.block_size, cfg.size, files, data_mode=data_mode)
    try:
        with np.load(maps_file) as saved:
            maps = {path: saved[path].tolist() for path in files}
    except (OSError, KeyError, ValueError):
        maps = block_maps(cached, list(files))
        tmp = maps_file.with_name(f".{maps_file.stem}.tmp.npz")
        np.savez(tmp, **{path: np.asarray(blocks, np.int64) for path, blocks in maps.items()})
        os.replace(tmp, maps_file)
    return cached, maps


IMAGE_FORMAT = 2  # bump when the image for equal inputs changes (make_image, file_contents)


def default_image_cache() -> Path:
    """``$HOTREMOVE_CACHE/images``, else ``$XDG_CACHE_HOME/hotremove/images``."""
    base = os.environ.get("HOTREMOVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hotremove"
    )
    return Path(base) / "images"


def build(
    scenario: Scenario, hooks: Hooks, workdir: Path, *, image_cache: Path | None = None
) -> Built:
    """Make the images and the machine the scenario describes (see module doc).
    ``image_cache``: reuse images made earlier with identical parameters (large runs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    wl = scenario.workload
    rng = np.random.default_rng(wl.seed)
    memory = PhysicalMemory(scenario.memory.size, scenario.memory.block_size)
    machine = Machine(memory=memory, preset=device_preset(scenario.device.preset))
    golden = Golden()
    frames = FrameAllocator(memory, wl.placement, rng)
    # huge pages first, as a booted system gets them: later, fragmentation leaves no room
    huge = [_alloc_thp(memory, rng, wl.placement) for _ in range(wl.thp)]
    images: dict[str, Path] = {}
    for fs_index, cfg in enumerate(scenario.filesystem):
        files = file_contents(wl.seed, fs_index, cfg)
        image = workdir / f"{cfg.name}.img"
        source, maps = cached_image(image_cache, image, cfg, wl.seed, fs_index, files)
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
        )
        machine.superblocks.append(sb)
        hooks.mount(machine, sb)
        a_ops = select_aops(cfg.type, cfg.options, cfg.data_mode)
        for ino, (path, data) in enumerate(files.items(), start=12):
            # the golden model takes the generated buffer itself (no copy): nothing reads
            # ``files`` after the page cache is filled, and only the golden model changes it
            golden.files[(cfg.name, path)] = data
            inode = Inode(ino, path, len(data), sb, maps[path])
            mapping = AddressSpace(inode, a_ops)
            machine.mappings.append(mapping)
            _cache_file(machine, mapping, data, frames, rng, wl.cached)
    for mapping in machine.mappings:
        _dirty_file(machine, mapping, golden, rng, wl.dirty, wl.dirty_buffers)
    memory.bh_pool.shrink_to_fit()  # every ring exists: no spare capacity to carry
    _page_classes(machine, rng, wl)
    _anon_pages(machine, golden, frames, rng, wl, huge)
    _unmovable_pages(machine, frames, wl.unmovable, wl.unmovable_blocks)
    log.info(
        "machine_built",
        pages=memory.nr_pages - memory.nr_free(),
        mappings=len(machine.mappings),
        blocks=len(memory.blocks),
    )
    return Built(scenario, machine, golden, images)


def _cache_file(
    machine: Machine,
    mapping: AddressSpace,
    data: bytes,
    frames: FrameAllocator,
    rng: np.random.Generator,
    cached: float,
) -> None:
    """Read a share of the file's pages into the page cache, with mapped buffers."""
    inode = mapping.host
    bs = inode.i_sb.s_blocksize
    per_page = PAGE_SIZE // bs
    nr_pages = -(-len(data) // PAGE_SIZE)
    chosen = np.flatnonzero(rng.random(nr_pages) < cached) if cached < 1 else range(nr_pages)
    pfns = frames.alloc_many(len(chosen))  # each one reference: the page cache's
    if not len(pfns):
        return
    chosen = np.asarray(chosen, dtype=np.int64)
    memory = machine.memory
    _read_pages(memory.frames, pfns, chosen, np.frombuffer(data, dtype=np.uint8))
    mm = memory.pages
    mm.flags[pfns] |= PG_uptodate | PG_lru
    mm.index[pfns] = chosen
    mm.mapping_id[pfns] = mm.mapping_index(mapping)
    mapping.i_pages.store_many(chosen, pfns, mm)
    if not mapping.a_ops.buffers:
        return
    # create_page_buffers for every page at once: a ring per page on the real block numbers
    block_map = np.asarray(inode.block_map, dtype=np.int64)
    logical = chosen[:, None] * per_page + np.arange(per_page)
    blocknrs = np.where(
        logical < len(block_map), block_map[np.minimum(logical, len(block_map) - 1)], -1
    )
    state = BH_Uptodate | BH_Mapped
    mm.private_bh[pfns] = memory.bh_pool.alloc_rings(pfns, bs, blocknrs, state)
    mm.refcount[pfns] += 1  # ->private's reference (folio_attach_private)
    mapped = (blocknrs >= 0).all(axis=1)
    mm.flags[pfns] |= np.where(mapped, PG_private | PG_mappedtodisk, PG_private).astype(np.uint32)


def _read_pages(
    frames: np.ndarray, pfns: np.ndarray, indices: np.ndarray, data: np.ndarray
) -> None:
    """The file's pages ``indices`` into frames ``pfns`` (a page past EOF is zero-filled):
    one memcpy when the frames are consecutive and the pages too, as with ``fill``."""
    whole = len(data) // PAGE_SIZE
    pages = data[: whole * PAGE_SIZE].reshape(whole, PAGE_SIZE)
    inside = indices < whole
    src, dst = indices[inside], pfns[inside]
    n = len(src)
    if n and dst[-1] - dst[0] == n - 1 and src[-1] - src[0] == n - 1:
        frames[dst[0] : dst[0] + n] = pages[src[0] : src[0] + n]
    elif n:
        frames[dst] = pages[src]
    for index, pfn in zip(indices[~inside].tolist(), pfns[~inside].tolist(), strict=True):
        tail = data[index * PAGE_SIZE : (index + 1) * PAGE_SIZE]
        frames[pfn, : len(tail)] = tail
        frames[pfn, len(tail) :] = 0


def _dirty_file(
    machine: Machine,
    mapping: AddressSpace,
    golden: Golden,
    rng: np.random.Generator,
    share: float,
    how: str,
) -> None:
    """Write into a share of the cached pages, as write() would: page cache only. With
    ``partial``, each page gets a uniformly random non-empty subset of its mapped buffers.
    Choices and bytes are drawn for the whole file at once."""
    if not mapping.i_pages:
        return
    indices = np.asarray(sorted(mapping.i_pages), dtype=np.int64)
    indices = indices[rng.random(len(indices)) < share]
    if not len(indices):
        return
    mm = machine.memory.pages
    pool = machine.memory.bh_pool
    pfns = np.fromiter((mapping.i_pages[i].pfn for i in indices.tolist()), np.int64, len(indices))
    has_buffers = mm.flags[pfns] & PG_private != 0
    members, owners = pool.rings(np.where(has_buffers, mm.private_bh[pfns], -1))
    mapped = pool.b_state[members] & BH_Mapped != 0
    members, owners = members[mapped], owners[mapped]
    order = np.lexsort((pool.b_offset[members], owners))  # by page, then place in the page
    members, owners = members[order], owners[order]
    if how == "partial":
        per_page = np.bincount(owners, minlength=len(pfns))
        rank = np.arange(len(owners)) - np.searchsorted(owners, owners)
        masks = np.ones(len(pfns), np.int64)
        several = per_page > 1
        masks[several] = rng.integers(1, 1 << per_page[several])
        keep = (masks[owners] >> rank) & 1 != 0
        members, owners = members[keep], owners[keep]
    nobh = np.flatnonzero(~has_buffers)
    extent_pfns = np.concatenate([pfns[owners], pfns[nobh]])
    offsets = np.concatenate(
        [pool.b_offset[members].astype(np.int64), np.zeros(len(nobh), np.int64)]
    )
    sizes = np.concatenate([pool.b_size[members].astype(np.int64), np.full(len(nobh), PAGE_SIZE)])
    bhs = np.concatenate([members, np.full(len(nobh), -1, np.int64)])
    sb = mapping.host.i_sb
    file_golden = golden.files[(sb.s_id, mapping.host.path)]
    positions = mm.index[extent_pfns] * PAGE_SIZE + offsets
    lengths = np.minimum(sizes, mapping.host.i_size - positions)
    data = rng.bit_generator.random_raw(-(-int(lengths.sum()) // 8)).tobytes()
    write_extents(machine, mapping, extent_pfns, offsets, lengths, bhs, file_golden, data)


def write_extents(
    machine: Machine,
    mapping: AddressSpace,
    pfns: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    bhs: np.ndarray,
    golden: bytearray,
    data: bytes,
) -> None:
    """``write()`` of ``data`` into cached pages, extent by extent (frame ``pfns[i]`` at
    ``offsets[i]``, ``lengths[i]`` bytes, through buffer ``bhs[i]`` or -1 for a page without
    buffers): new bytes in the frames and in the golden model, then the buffers dirtied as
    the filesystem says — through its journal when a plugin attached one (``sb.s_journal``),
    else ``mark_buffer_dirty`` (for many buffers at once: BH_Dirty, PG_dirty, the tag)."""
    frames = memoryview(machine.memory.frames.reshape(-1))
    mm = machine.memory.pages
    source = memoryview(data)
    done = 0
    for pfn, offset, length, pos in zip(
        pfns.tolist(),
        offsets.tolist(),
        lengths.tolist(),
        (mm.index[pfns] * PAGE_SIZE + offsets).tolist(),
        strict=True,
    ):
        chunk = source[done : done + length]
        start = pfn * PAGE_SIZE + offset
        frames[start : start + length] = chunk
        golden[pos : pos + length] = chunk
        done += length
    journal = mapping.host.i_sb.s_journal
    buffered = bhs[bhs >= 0]
    if journal is not None:
        pool = machine.memory.bh_pool
        for index in buffered.tolist():
            journal.dirty_data(BufferHead(pool, index))
    else:
        machine.memory.bh_pool.b_state[buffered] |= np.uint32(BH_Dirty)
    dirty = np.unique(pfns if journal is None else pfns[bhs < 0])
    mm.flags[dirty] |= np.uint32(PG_dirty)
    mapping.dirty_tags.update(mm.index[dirty].tolist())


def page_cache_write(
    machine: Machine,
    mapping: AddressSpace,
    page: Page,
    bhs: list[BufferHead],
    golden: bytearray,
    randbytes: Callable[[int], bytes],
) -> None:
    """``write()`` into one cached page, through ``bhs`` (the whole page when it has no
    buffers), with bytes from ``randbytes`` — the explorer's writer actor."""
    inode = mapping.host
    base = page.index * PAGE_SIZE
    if page.flags & PG_private:
        offsets = [bh.b_offset for bh in bhs]
        lengths = [min(bh.b_size, inode.i_size - base - bh.b_offset) for bh in bhs]
        indices = [bh._bh_index for bh in bhs]
    else:
        offsets, lengths, indices = [0], [min(PAGE_SIZE, inode.i_size - base)], [-1]
    data = b"".join(randbytes(length) for length in lengths)
    write_extents(
        machine,
        mapping,
        np.full(len(offsets), page.pfn, np.int64),
        np.asarray(offsets, np.int64),
        np.asarray(lengths, np.int64),
        np.asarray(indices, np.int64),
        golden,
        data,
    )


def _anon_pages(
    machine: Machine,
    golden: Golden,
    frames: FrameAllocator,
    rng: np.random.Generator,
    wl: WorkloadConfig,
    huge: list[Page],
) -> None:
    """A process's private memory: one PTE (and so one reference) per page, no buffers;
    some pages also in the swap cache or mlocked, and the huge pages allocated up front."""
    n = wl.anon // PAGE_SIZE
    if not n and not huge:
        return
    vma = AnonVma("anon")
    machine.anon_vmas.append(vma)
    for vpn in range(n):
        page = frames.alloc()  # its one reference becomes the PTE's
        add_anon_folio(machine, golden, vma, page, vpn, rng)
        if rng.random() < wl.swapcache:
            add_to_swap_cache(machine, page)
        if rng.random() < wl.mlocked:
            page.flags |= PG_mlocked | PG_unevictable
    for i, head in enumerate(huge):
        add_anon_folio(machine, golden, vma, head, THP_VPN_BASE + i * HPAGE_NR, rng)


HPAGE_NR = 1 << HPAGE_PMD_ORDER
THP_VPN_BASE = 1 << 20  # huge pages live in their own aligned stretch of the address space


def add_anon_folio(
    machine: Machine,
    golden: Golden,
    vma: AnonVma,
    page: Page,
    vpn: int,
    rng: np.random.Generator,
) -> None:
    """Fill an allocated folio with random bytes and map it at ``vpn`` (one PTE, or a PMD
    for a huge page, holding one reference); record every subpage in the golden model."""
    nr = folio_nr_pages(page)
    frames = machine.memory.frames[page.pfn : page.pfn + nr]
    frames[:] = np.frombuffer(rng.bytes(PAGE_SIZE * nr), dtype=np.uint8).reshape(nr, PAGE_SIZE)
    page.flags |= PG_anon | PG_swapbacked | PG_uptodate | PG_lru | PG_dirty
    page.mapping = vma
    page.index = vpn
    page._mapcount = 1  # one PTE, or one PMD for a huge page
    for sub in range(nr):
        vma.ptes[vpn + sub] = page.pfn + sub
        golden.anon[(vma.name, vpn + sub)] = digest(frames[sub])


def _alloc_thp(memory: PhysicalMemory, rng: np.random.Generator, placement: str) -> Page:
    nr = HPAGE_NR
    starts = [
        s
        for s in range(0, memory.nr_pages - nr + 1, nr)
        if all(memory.is_free(p) for p in (s, s + nr // 2, s + nr - 1))
    ]
    if placement == "spread":
        rng.shuffle(starts)
    for start in starts:
        try:
            return memory.alloc_compound_at(start, HPAGE_PMD_ORDER)
        except ValueError:
            continue
    raise WorkloadError("workload.thp: no free, aligned 2 MiB range left for a huge page")


def add_to_swap_cache(machine: Machine, page: Page) -> None:
    """Give an anonymous page a swap slot: the swap cache holds a reference and the entry
    lives in ->private (``folio->swap``)."""
    entry = len(machine.swap_cache.i_pages) + 1
    while entry in machine.swap_cache.i_pages:
        entry += 1
    page.flags |= PG_swapcache
    page.private = entry
    page._refcount += 1
    machine.swap_cache.i_pages[entry] = page


def lock_buffer_elsewhere(machine: Machine, bh: BufferHead, hold_seconds: float = 1e-3) -> None:
    """Another task holds ``bh``'s lock (a metadata lookup, a reader): whoever sleeps on it
    waits ``hold_seconds`` until that task unlocks."""
    bh.b_state |= BH_Lock

    def release() -> None:
        bh.b_state &= ~BH_Lock
        machine.clock.cpu_seconds += hold_seconds

    machine.waiters[bh] = release


def pin_page(machine: Machine, page: Page, release_after: int = 0) -> None:
    """Someone holds an extra reference (``get_page``): migration's expected-refcount check
    fails until they let go, after ``release_after`` migration passes (0: never)."""
    page._refcount += 1
    machine.pins[page] = machine.pins.get(page, 0) + 1
    if not release_after:
        return
    remaining = [release_after]

    def holder(m: Machine) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            page._refcount -= 1
            m.pins[page] -= 1
            if not m.pins[page]:
                del m.pins[page]
            m.daemons.remove(holder)

    machine.daemons.append(holder)


UNMOVABLE_KINDS = (PG_reserved, PG_slab, PG_pgtable)


def _unmovable_pages(machine: Machine, frames: FrameAllocator, n: int, blocks: list[int]) -> None:
    """Kernel allocations (memblock reserved, slab, page tables) that can never move."""
    memory = machine.memory
    candidates = (
        iter(
            pfn
            for b in blocks
            for pfn in range(memory.blocks[b].start_pfn, memory.blocks[b].end_pfn)
        )
        if blocks
        else None
    )
    for i in range(n):
        if candidates is None:
            page = frames.alloc()
        else:
            pfn = next((p for p in candidates if memory.is_free(p)), None)
            if pfn is None:
                raise WorkloadError("workload.unmovable_blocks: no free frame left there")
            page = memory.alloc_page_at(pfn)
        page.flags |= UNMOVABLE_KINDS[i % len(UNMOVABLE_KINDS)]


def _page_classes(machine: Machine, rng: np.random.Generator, wl: WorkloadConfig) -> None:
    """Writeback in flight, buffers locked by another task, extra references (each step
    only when the scenario asks for it)."""
    for mapping in machine.mappings if wl.writeback or wl.locked else ():
        for index in sorted(mapping.i_pages):
            page = mapping.i_pages[index]
            if page.flags & PG_dirty and rng.random() < wl.writeback:
                start_writeback(machine, mapping, page)
            elif page.flags & PG_private and rng.random() < wl.locked:
                lock_buffer_elsewhere(machine, page_buffers(page)[0])
    cached = [p for m in machine.mappings for p in m.i_pages.values()] if wl.pinned else []
    if cached:
        for i in rng.choice(len(cached), size=min(wl.pinned, len(cached)), replace=False):
            pin_page(machine, cached[int(i)], wl.pin_release)
