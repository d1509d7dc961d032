"""A machine from a snapshot: memory blocks rebuilt frame by frame, page cache on a real image.

What ``hotremove run --snapshot`` and the plan's probes run on (see :func:`synthesize`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hotremove.errors import ImageError, ScenarioError
from hotremove.fs.fstype import FilesystemType, ProbeConfig
from hotremove.fs.registry import installed_types, known, resolve
from hotremove.hooks import Hooks
from hotremove.kernels import DEFAULT_KERNEL, Kernel, get_kernel
from hotremove.mm.page_writeback import start_writeback
from hotremove.model.address_space import AddressSpace, AddressSpaceOps, AnonVma, Inode, SuperBlock
from hotremove.model.blockdev import BlockDevice
from hotremove.model.buffer_head import (
    BH_Mapped,
    BH_Uptodate,
    create_page_buffers,
    mark_buffer_dirty,
    page_buffers,
)
from hotremove.model.cost import preset as device_preset
from hotremove.model.machine import Machine
from hotremove.model.memory import PhysicalMemory
from hotremove.model.page import (
    PAGE_SIZE,
    Page,
    PG_active,
    PG_dirty,
    PG_lru,
    PG_mappedtodisk,
    PG_mlocked,
    PG_pgtable,
    PG_referenced,
    PG_reserved,
    PG_slab,
    PG_unevictable,
    PG_uptodate,
    PG_writeback,
)
from hotremove.realmachine.snapshot import SnapshotError
from hotremove.scenario import DEFAULT_FS_TYPE
from hotremove.scenario import validate as validate_scenario
from hotremove.workload import Built, Golden, add_anon_folio, add_to_swap_cache

# -- a machine from a snapshot ------------------------------------------------------------------
#: What the simulator builds in a frame (the plan derives it from the KPF word).
K_FREE, K_FILE, K_FILE_BH, K_FILE_DIRTY_BH, K_FILE_DIRTY, K_ANON, K_TAIL = range(7)
K_RESERVED, K_SLAB, K_PGTABLE = range(7, 10)
KIND_NAMES = (
    "free",
    "file",  # page cache, no buffer_heads, clean
    "file_bh",  # page cache with buffer_heads, clean
    "file_dirty_bh",  # page cache with buffer_heads, every buffer dirty
    "file_dirty",  # page cache without buffer_heads, dirty
    "anon",  # anonymous folio (order on the head)
    "tail",  # tail page of the anonymous folio before it
    "reserved",
    "slab",
    "pgtable",
)
FILE_KINDS = (K_FILE, K_FILE_BH, K_FILE_DIRTY_BH, K_FILE_DIRTY)
UNMOVABLE_KINDS = {K_RESERVED: PG_reserved, K_SLAB: PG_slab, K_PGTABLE: PG_pgtable}
#: Modifier bits of a kind.
M_WRITEBACK, M_MLOCKED, M_SWAPCACHE = 1, 2, 4
#: Bits of :attr:`Layout.extra`: page flags carried over from the snapshot as they were.
X_REFERENCED, X_ACTIVE, X_MAPPEDTODISK = 1, 2, 4
#: Pages per simulated file (4 MiB files).
FILE_PAGES = 1024


@dataclass
class Layout:
    """Per-frame arrays (any shape, read in C order): kind, modifier bits, folio order (on
    the head of an anonymous folio) and extra flags."""

    kind: np.ndarray
    mods: np.ndarray
    order: np.ndarray
    extra: np.ndarray

    @classmethod
    def free(cls, nr_pages: int) -> Layout:
        zero = np.zeros(nr_pages, dtype=np.uint8)
        return cls(zero, zero.copy(), zero.copy(), zero.copy())

    @classmethod
    def concat(cls, parts: list[Layout]) -> Layout:
        return cls(
            *(
                np.concatenate([getattr(p, name).ravel() for p in parts])
                for name in ("kind", "mods", "order", "extra")
            )
        )


def registered(fstype: str) -> FilesystemType | None:
    """The installed filesystem type ``fstype``, or None (no plugin brings it)."""
    return installed_types().get(fstype)


def type_options(fstype: str) -> tuple[str, ...]:
    """The mount options ``fstype``'s plugin knows (the ones that may change which a_ops a
    file gets); none for a type no plugin registers."""
    fs_type = registered(fstype)
    return tuple(fs_type.options) if fs_type is not None else ()


@dataclass(frozen=True)
class FsSpec:
    """The filesystem that owns the simulated page cache. A type an installed plugin
    registers is simulated as that type (its image, its table in the kernel the plan is for,
    its mount); any other gets an a_ops table of its own name (no plugin claims it: the
    fallback decides) over an image of the scenario's default type that only stores the
    bytes."""

    type: str
    options: tuple[str, ...] = ()
    block_size: int = 4096

    @classmethod
    def from_mount(cls, fstype: str, options: tuple[str, ...] | list[str] = ()) -> FsSpec:
        if not re.fullmatch(r"[a-z0-9_.]{1,32}", fstype or ""):
            raise SnapshotError(f"--fs: not a filesystem type: {fstype!r}")
        known = type_options(fstype)
        return cls(fstype, tuple(o for o in options if o in known))

    @classmethod
    def chosen(cls, fstype: str) -> FsSpec:
        """``--fs TYPE``: only a type an installed plugin registers (any other would be
        planned as the fallback without a word); a snapshot's own mounts take any type."""
        try:
            known(fstype, key="--fs")
        except ValueError as exc:
            raise SnapshotError(str(exc)) from None
        return cls.from_mount(fstype)

    @property
    def fs_type(self) -> FilesystemType | None:
        return registered(self.type)

    @property
    def image_type(self) -> str:
        return self.type if self.fs_type is not None else DEFAULT_FS_TYPE

    def config(self) -> ProbeConfig:
        """The filesystem as a type reads a scenario's table (the image's type, options)."""
        options = self.options if self.fs_type is not None else ()
        return ProbeConfig(
            name="snapshot", type=self.image_type, block_size=self.block_size, options=options
        )

    @property
    def data_mode(self) -> str | None:
        fs_type = self.fs_type
        return fs_type.data_mode(self.config()) if fs_type is not None else None

    def aops_in(self, kernel: Kernel) -> AddressSpaceOps:
        """The table a file gets when ``kernel`` mounts this filesystem."""
        fs_type = self.fs_type
        if fs_type is not None:
            return fs_type.aops(self.config(), kernel)
        return AddressSpaceOps(f"{self.type}_aops", self.type)

    @property
    def a_ops(self) -> AddressSpaceOps:
        """The table in the newest modelled kernel (:meth:`aops_in` for another)."""
        return self.aops_in(get_kernel(DEFAULT_KERNEL))

    @property
    def label(self) -> str:
        extra = [f"data={self.data_mode}"] if self.data_mode else []
        extra += [o for o in self.options if not o.startswith("data=")]
        return f"{self.type} ({', '.join(extra)})" if extra else self.type


def synthesize(
    layout: Layout,
    block_size: int,
    fs: FsSpec,
    hooks: Hooks,
    workdir: Path,
    *,
    device: str,
    remove: list[int],
    seed: int = 1,
    name: str = "snapshot",
    kernel: Kernel | None = None,
) -> Built:
    """A machine whose frame ``i`` holds a page of ``layout``'s kind ``i``, with its files on
    a real image in ``workdir`` and a golden model, ready for ``offline`` and ``verify``.
    ``kernel``: the simulated kernel, whose table the files get (default: the newest)."""
    kind, mods = layout.kind.ravel(), layout.mods.ravel()
    order, extra = layout.order.ravel(), layout.extra.ravel()
    memory = PhysicalMemory(kind.size * PAGE_SIZE, block_size)
    machine = Machine(
        memory=memory, preset=device_preset(device), kernel=kernel or get_kernel(DEFAULT_KERNEL)
    )
    golden = Golden()
    rng = np.random.default_rng([seed, 0x5EED])
    images: dict[str, Path] = {}
    file_pfns = np.flatnonzero(np.isin(kind, FILE_KINDS))
    files = -(-file_pfns.size // FILE_PAGES)
    file_size = min(file_pfns.size, FILE_PAGES) * PAGE_SIZE
    image_size = _image_size(files * file_size, fs)
    if file_pfns.size:
        workdir.mkdir(parents=True, exist_ok=True)
        images[name] = _page_cache(
            machine,
            golden,
            hooks,
            workdir / f"{name}.img",
            fs,
            image_size,
            file_pfns,
            kind,
            mods,
            extra,
            rng,
            name,
        )
    anon = _anon(machine, golden, kind, mods, order, extra, rng)
    unmovable = 0
    for k, flag in UNMOVABLE_KINDS.items():
        for pfn in np.flatnonzero(kind == k):
            memory.alloc_page_at(int(pfn)).flags |= flag
            unmovable += 1
    dirty = int(np.isin(kind[file_pfns], (K_FILE_DIRTY_BH, K_FILE_DIRTY)).sum())
    spec: dict[str, Any] = {
        "memory": {"size": memory.size, "block_size": block_size},
        "workload": {
            "seed": seed,
            "dirty": round(dirty / file_pfns.size, 4) if file_pfns.size else 0.0,
            "dirty_buffers": "whole",
            "anon": anon * PAGE_SIZE,
            "unmovable": unmovable,
        },
        "remove": {"blocks": remove},
        "device": {"preset": device},
    }
    if kernel is not None:
        spec["kernel"] = {"version": kernel.version}
    if file_pfns.size:
        options = list(fs.config().options)
        spec["filesystem"] = [
            {
                "name": name,
                "type": fs.image_type,
                "block_size": fs.block_size,
                "size": image_size,
                "files": files,
                "file_size": file_size,
                "options": options,
            }
        ]
    try:
        scenario = validate_scenario(spec)
    except ScenarioError as exc:
        raise SnapshotError(f"cannot describe the snapshot machine as a scenario: {exc}") from None
    return Built(scenario, machine, golden, images)


def _image_size(data_bytes: int, fs: FsSpec) -> int:
    """Room for the files, the metadata (≈ 7 %) and, for a type with a journal (one with data
    modes), a journal of the size mkfs tools default to (1024 to 16384 blocks by size)."""
    size = max(8 << 20, int(data_bytes * 1.07) + (4 << 20))
    if fs.data_mode:
        blocks = size // fs.block_size
        journal = 1024 if blocks < 32768 else 4096 if blocks < 262144 else 8192
        journal = journal if blocks < 524288 else 16384
        size += journal * fs.block_size
    return -(-size // (1 << 20)) << 20


def _page_cache(
    machine: Machine,
    golden: Golden,
    hooks: Hooks,
    image: Path,
    fs: FsSpec,
    image_size: int,
    pfns: np.ndarray,
    kind: np.ndarray,
    mods: np.ndarray,
    extra: np.ndarray,
    rng: np.random.Generator,
    name: str,
) -> Path:
    """Files holding exactly the page-cache pages at ``pfns`` (pfn order = file order), read
    into those frames with buffers on their real blocks; dirty pages written in the cache only."""
    memory = machine.memory
    data = np.frombuffer(rng.bytes(pfns.size * PAGE_SIZE), dtype=np.uint8)
    data = data.reshape(pfns.size, PAGE_SIZE)
    chunks = [pfns[i : i + FILE_PAGES] for i in range(0, pfns.size, FILE_PAGES)]
    paths = [f"f{i:05d}" for i in range(len(chunks))]
    contents = {
        path: data[i * FILE_PAGES : i * FILE_PAGES + chunk.size].tobytes()
        for i, (path, chunk) in enumerate(zip(paths, chunks, strict=True))
    }
    fs_type = resolve(fs.image_type, hooks.fs_types)
    fs_type.require_tools()
    cfg = fs.config()
    for attempt in range(3):  # the metadata estimate was short: grow the image and retry
        sized = replace(cfg, name=name, size=image_size << attempt)
        try:
            fs_type.make_image(image, sized, contents)
            break
        except ImageError:
            if attempt == 2:
                raise
    maps = {p: list(m.blocks) for p, m in fs_type.map_files(image, sized, paths).items()}
    bdev = BlockDevice(image, fs.block_size, machine.preset, machine.clock, machine.io)
    sb = SuperBlock(
        s_id=name,
        s_type=fs.image_type,
        s_blocksize=fs.block_size,
        s_bdev=bdev,
        data_mode=fs_type.data_mode(cfg),
        options=cfg.options,
    )
    machine.superblocks.append(sb)
    fs_type.mount(machine, sb)
    hooks.mount(machine, sb)
    a_ops = fs.aops_in(machine.kernel)
    bs = fs.block_size
    per_page = PAGE_SIZE // bs
    memory.frames[pfns] = data
    for ino, (path, chunk) in enumerate(zip(paths, chunks, strict=True), start=12):
        golden.files[(name, path)] = bytearray(contents[path])
        inode = Inode(ino, path, len(contents[path]), sb, maps[path])
        mapping = AddressSpace(inode, a_ops)
        machine.mappings.append(mapping)
        for index, pfn in enumerate(chunk.tolist()):
            page = memory.alloc_page_at(pfn)  # its one reference is the page cache's
            k, m, x = int(kind[pfn]), int(mods[pfn]), int(extra[pfn])
            page.flags |= PG_uptodate | PG_lru | _extra_flags(x, m)
            page.mapping = mapping
            page.index = index
            mapping.i_pages[index] = page
            if k in (K_FILE_BH, K_FILE_DIRTY_BH) and a_ops.buffers:
                first = index * per_page
                blocknrs = inode.block_map[first : first + per_page]
                create_page_buffers(page, bs, blocknrs, BH_Uptodate | BH_Mapped)
            if k in (K_FILE_DIRTY_BH, K_FILE_DIRTY):
                _dirty_page(machine, golden, mapping, page, name, rng)
            if m & M_WRITEBACK:
                start_writeback(machine, mapping, page)
            if m & M_MLOCKED:
                page.flags |= PG_mlocked | PG_unevictable
    return image


def _extra_flags(extra: int, mods: int) -> int:
    flags = PG_referenced if extra & X_REFERENCED else 0
    if extra & X_ACTIVE and not mods & M_MLOCKED:  # an unevictable page is never active
        flags |= PG_active
    if extra & X_MAPPEDTODISK:
        flags |= PG_mappedtodisk
    return flags


def _dirty_page(
    machine: Machine,
    golden: Golden,
    mapping: AddressSpace,
    page: Page,
    name: str,
    rng: np.random.Generator,
) -> None:
    """write() over the whole page: new bytes in the cache, every buffer dirty (through the
    journal when the filesystem has one), the golden file updated."""
    new = rng.bytes(PAGE_SIZE)
    machine.memory.frames[page.pfn] = np.frombuffer(new, dtype=np.uint8)
    pos = page.index * PAGE_SIZE
    golden.files[(name, mapping.host.path)][pos : pos + PAGE_SIZE] = new
    if page.private is None:
        page.flags |= PG_dirty
        mapping.tag_dirty(page.index)
        return
    journal = mapping.host.i_sb.s_journal
    for bh in page_buffers(page):
        if journal is not None:
            journal.dirty_data(bh)
        else:
            mark_buffer_dirty(bh)


def _anon(
    machine: Machine,
    golden: Golden,
    kind: np.ndarray,
    mods: np.ndarray,
    order: np.ndarray,
    extra: np.ndarray,
    rng: np.random.Generator,
) -> int:
    """Anonymous folios of one process; returns the number of pages."""
    heads = np.flatnonzero(kind == K_ANON)
    if not heads.size:
        return 0
    memory = machine.memory
    vma = AnonVma("anon")
    machine.anon_vmas.append(vma)
    vpn = pages = 0
    for pfn in heads.tolist():
        o, m = int(order[pfn]), int(mods[pfn])
        nr = 1 << o
        page = memory.alloc_compound_at(pfn, o) if o else memory.alloc_page_at(pfn)
        vpn = -(-vpn // nr) * nr  # a huge page sits at an aligned address
        add_anon_folio(machine, golden, vma, page, vpn, rng)
        page.flags |= _extra_flags(int(extra[pfn]) & ~X_MAPPEDTODISK, m)
        if m & M_SWAPCACHE:
            add_to_swap_cache(machine, page)
        if m & M_MLOCKED:
            page.flags |= PG_mlocked | PG_unevictable
        if m & M_WRITEBACK:
            _swap_writeback(machine, page)
        vpn += nr
        pages += nr
    return pages


def _swap_writeback(machine: Machine, page: Page) -> None:
    """A swap-out write is in flight: whoever waits for it sleeps one page write (the swap
    device is not modelled, so the request is charged to the clock only)."""
    page.flags |= PG_writeback
    seconds = machine.preset.request_seconds(PAGE_SIZE)

    def end_page_writeback() -> None:
        machine.clock.io_seconds += seconds
        page.flags &= ~PG_writeback

    machine.waiters[page] = end_page_writeback


__all__ = ["FsSpec", "Layout", "synthesize"]
