"""Page classes of simulated frames, for the engine's report and the fidelity table (the names
are :mod:`hotremove.sim.pageclass`'s, shared with the real-machine plan).

| class | what the engine does (every mode unless said) |
|---|---|
| free | isolated with the range; nothing to move |
| file_buffers | page cache with buffers, clean: rebound by buffer_migrate_folio, no I/O |
| file_dirty | page cache with (partly) dirty buffers: rebound, every BH_Dirty kept, no I/O |
| file_nobh | page cache without buffers: plain migrate_folio |
| writeback | PG_writeback, buffers locked by I/O: async/sync_light -EBUSY, sync waits for the I/O |
| locked_buffers | a buffer another task holds locked: async -EAGAIN, sync(_light) waits |
| pinned | an extra reference: -EAGAIN every pass; moves once released, else fails "busy" |
| journal_held | data=journal buffers jbd2 holds: _norefs -EAGAIN until commit + checkpoint |
| anon | anonymous, mapped: unmap (migration entry), copy, remap to the new frame |
| swapcache | anonymous and in the swap cache: the swap cache entry moves too |
| mlocked | mlocked/unevictable: still migrated (offlining may move them), flags kept |
| thp | 2 MiB folio: moves whole to a free aligned 2 MiB range, or -ENOMEM |
| unmovable | reserved / slab / page table: isolation fails, offline rolled back |
"""

from __future__ import annotations

import numpy as np

from hotremove.model.address_space import AnonVma
from hotremove.model.buffer_head import BH_JBD, BH_Dirty, BH_Lock
from hotremove.model.machine import Machine
from hotremove.model.page import (
    PG_UNMOVABLE,
    PG_dirty,
    PG_head,
    PG_mlocked,
    PG_private,
    PG_swapcache,
    PG_tail,
    PG_unevictable,
    PG_writeback,
)
from hotremove.sim import pageclass as pc

CLASSES = (
    pc.FREE,
    pc.FILE_BUFFERS,
    pc.FILE_DIRTY,
    pc.FILE_NOBH,
    pc.WRITEBACK,
    pc.LOCKED_BUFFERS,
    pc.PINNED,
    pc.JOURNAL_HELD,
    pc.ANON,
    pc.SWAPCACHE,
    pc.MLOCKED,
    pc.THP,
    pc.UNMOVABLE,
)


def classify_frames(machine: Machine, pfns: np.ndarray) -> np.ndarray:
    """The class (an index into :data:`CLASSES`) of every frame in ``pfns``: the table above,
    as rules applied lowest precedence first. Tail pages belong to their head."""
    mm = machine.memory.pages
    pool = machine.memory.bh_pool
    n = len(pfns)
    flags = mm.flags[pfns]
    if not n:
        return np.zeros(0, np.int8)
    # per distinct ->mapping, then spread to its pages
    anon = np.asarray([type(m) is AnonVma for m in mm.mappings], bool)
    journalled = np.asarray(
        [getattr(getattr(m, "a_ops", None), "journalled_data", False) for m in mm.mappings], bool
    )
    mids = mm.mapping_id[pfns]
    anon, journalled = anon[mids], journalled[mids]
    members, owners = pool.rings(np.where(flags & PG_private, mm.private_bh[pfns], -1))
    state = np.zeros(n, np.uint32)  # the OR of every buffer's state bits, per page
    np.bitwise_or.at(state, owners, pool.b_state[members])
    pinned = np.isin(pfns, [page.pfn for page in machine.pins])
    cls = np.full(n, CLASSES.index(pc.FILE_BUFFERS), np.int8)
    rules = [  # lowest precedence first
        (pc.FILE_DIRTY, (flags & PG_dirty != 0) | (state & BH_Dirty != 0)),
        (pc.JOURNAL_HELD, (state & BH_JBD != 0) & journalled),
        (pc.LOCKED_BUFFERS, state & BH_Lock != 0),
        (pc.FILE_NOBH, mm.private_bh[pfns] < 0),  # no buffers (nothing, or a folio state)
        (pc.ANON, anon),
        (pc.SWAPCACHE, anon & (flags & PG_swapcache != 0)),
        (pc.MLOCKED, anon & (flags & (PG_mlocked | PG_unevictable) != 0)),
        (pc.WRITEBACK, flags & PG_writeback != 0),
        (pc.PINNED, pinned),
        (pc.THP, flags & PG_head != 0),
        (pc.UNMOVABLE, flags & PG_UNMOVABLE != 0),
        (pc.FREE, (mm.refcount[pfns] == 0) & (flags & PG_tail == 0)),
    ]
    for name, where in rules:
        cls[where] = CLASSES.index(name)
    return cls
