"""What must hold while actors and the migration interleave, and once they are all done.

Continuously (at every context switch — when another actor could observe the state):

* no I/O in flight reads a frame that no longer belongs to its buffer's page;
* every unlocked page in the page cache is a live frame of that file, and every buffer of it
  points back at it (``bh->b_page``);
* every unlocked page that moved (or sits in the region) holds what the last ``write()``
  put there (the golden model).

At the end (every actor done, trackers off): no I/O in flight, no lock held by anyone
(spinlocks, sleeping locks, page and buffer bits), references balanced
(:func:`hotremove.sim.checks.check_machine`), no strategy crashed, and after ``sync`` every file
on the image equals the golden model — no write that completed was lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from hotremove.explore.actors import World, io_problem
from hotremove.explore.scheduler import Finding
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import page_buffers
from hotremove.model.locks import Task
from hotremove.model.machine import Machine
from hotremove.model.page import PAGE_SIZE, PG_locked, PG_private, PG_uptodate
from hotremove.sim.checks import check_machine

#: check_machine / PageCheck findings that stay true while other actors run. The others
#: (locks and references held *now*, buffer state bits others may change before the
#: strategy locks the buffers) are checked once every actor is done.
SOUND_WHILE_RUNNING = {"copy", "flags", "bh_page", "mapping", "pte", "swap_cache", "offline"}


def golden_from_machine(machine: Machine) -> dict[tuple[str, str], bytearray]:
    """What every file must contain after sync, when no builder recorded it: the image's
    blocks, overlaid with the page cache (every cached page is uptodate and newest)."""
    golden: dict[tuple[str, str], bytearray] = {}
    for mapping in machine.mappings:
        inode = mapping.host
        sb = inode.i_sb
        bs = sb.s_blocksize
        data = bytearray(_read_blocks(sb.s_bdev.path, bs, inode.block_map))[: inode.i_size]
        frames = machine.memory.frames
        for index, page in mapping.i_pages.items():
            base = index * PAGE_SIZE
            length = max(0, min(PAGE_SIZE, inode.i_size - base))
            data[base : base + length] = frames[page.pfn][:length].tobytes()
        golden[(sb.s_id, inode.path)] = data
    return golden


def _read_blocks(path: os.PathLike[str], bs: int, blocks: Iterable[int]) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return b"".join(os.pread(fd, bs, b * bs) for b in blocks)
    finally:
        os.close(fd)


class Continuous:
    """The checks run at every context switch (see module doc)."""

    def __init__(self, world: World, blocks: list[int]) -> None:
        self.world = world
        machine = world.machine
        memory = machine.memory
        self.region = {
            pfn
            for b in blocks
            for pfn in range(memory.blocks[b].start_pfn, memory.blocks[b].end_pfn)
        }
        keys = world.focus.keys if world.focus is not None else None
        #: the pages another task can see change: all of them, or a focused window's
        self.watched = [
            (m, i)
            for m in machine.mappings
            for i in m.i_pages
            if keys is None or (id(m), i) in keys
        ]
        self.start = {(id(m), i): m.i_pages[i].pfn for m, i in self.watched}

    def __call__(self) -> list[Finding]:
        world = self.world
        memory = world.machine.memory
        found = [
            Finding("io_from_foreign_frame", problem, io.actor)
            for io in world.inflight
            if (problem := io_problem(io, memory)) is not None
        ]
        frames = memory.frames
        for mapping, index in self.watched:
            page = mapping.i_pages.get(index)
            if page is None or page.flags & PG_locked:
                continue  # being migrated or written: its owner is not done with it
            where = f"{mapping.host.path} page {index} (pfn {page.pfn:#x})"
            if memory.is_free(page.pfn) or page.mapping is not mapping:
                found.append(Finding("page_cache", f"{where} is a freed or foreign frame"))
                continue
            if page.flags & PG_private:
                for bh in page_buffers(page):
                    if bh.b_page != page:
                        found.append(
                            Finding(
                                "bh_page",
                                f"buffer blk {bh.b_blocknr} of {where} points at "
                                f"{_pfn(bh.b_page)}, not at its page",
                            )
                        )
            moved = self.start.get((id(mapping), index)) != page.pfn
            if (moved or page.pfn in self.region) and page.flags & PG_uptodate:
                problem = content_problem(world, mapping, index, frames[page.pfn])
                if problem is not None:
                    found.append(Finding("lost_write", f"{where}: {problem}"))
        return found


def _pfn(page: object) -> str:
    pfn = getattr(page, "pfn", None)
    return f"pfn {pfn:#x}" if pfn is not None else "no page"


def content_problem(world: World, mapping: AddressSpace, index: int, frame: object) -> str | None:
    inode = mapping.host
    base = index * PAGE_SIZE
    length = max(0, min(PAGE_SIZE, inode.i_size - base))
    want = bytes(world.golden[(inode.i_sb.s_id, inode.path)][base : base + length])
    got = frame[:length].tobytes()  # type: ignore[index]
    if got == want:
        return None
    offset = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    return f"the page cache lost a write (byte {base + offset} differs from the last write)"


def locks_held(tasks: Iterable[Task]) -> list[Finding]:
    found = []
    for task in tasks:
        for lock in task.held_spinlocks:
            found.append(Finding("lock_held", f"{task.name} still holds {lock.name}", task.name))
        for held in task.held_locks:
            found.append(
                Finding(
                    "lock_held",
                    f"{task.name} still holds {held.lock_class} {held.name} "
                    f"(taken at {' ← '.join(held.site[:3])})",
                    task.name,
                )
            )
    return found


def machine_findings(machine: Machine, blocks: list[int]) -> list[Finding]:
    return [
        Finding(f"check:{c.check}", f"pfn {c.pfn:#x}: {c.message}" if c.pfn >= 0 else c.message)
        for c in check_machine(machine, blocks)
    ]


def disk_findings(world: World, mappings: Sequence[AddressSpace] | None = None) -> list[Finding]:
    """After sync: every file's blocks on the image (or only ``mappings``') equal the golden
    model. Reads each image once (the host's page cache has every write: no fsync needed)
    and gathers each file's blocks from it."""
    found = []
    images: dict[str, np.ndarray] = {}
    for mapping in world.machine.mappings if mappings is None else mappings:
        inode = mapping.host
        sb = inode.i_sb
        path = os.fspath(sb.s_bdev.path)
        if path not in images:
            images[path] = np.fromfile(path, np.uint8)
        bs = sb.s_blocksize
        blocks = images[path][: len(images[path]) // bs * bs].reshape(-1, bs)
        got = blocks[np.asarray(inode.block_map, np.int64)].tobytes()[: inode.i_size]
        want = bytes(world.golden[(sb.s_id, inode.path)])
        if got != want:
            offset = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(got)
            )
            found.append(
                Finding(
                    "lost_write",
                    f"after sync, {sb.s_id}:{inode.path} differs from the golden model at byte "
                    f"{offset} (a completed write never reached the disk)",
                )
            )
    return found
