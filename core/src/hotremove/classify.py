"""Page classes: what kind of frame a page is, for the report and the fidelity table.

| class | what the engine does (every mode unless said) |
|---|---|
| free | isolated with the range; nothing to move |
| file_clean | page cache with buffers, clean: rebound by buffer_migrate_folio, no I/O |
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

from hotremove.model.address_space import AnonVma
from hotremove.model.buffer_head import BH_JBD, BH_Dirty, BH_Lock
from hotremove.model.machine import Machine
from hotremove.model.page import (
    PG_UNMOVABLE,
    Page,
    PG_dirty,
    PG_head,
    PG_mlocked,
    PG_private,
    PG_swapcache,
    PG_tail,
    PG_unevictable,
    PG_writeback,
)

CLASSES = (
    "free",
    "file_clean",
    "file_dirty",
    "file_nobh",
    "writeback",
    "locked_buffers",
    "pinned",
    "journal_held",
    "anon",
    "swapcache",
    "mlocked",
    "thp",
    "unmovable",
)


def classify(machine: Machine, page: Page) -> str:
    """The class of an in-use head page (or ``free``). Tail pages belong to their head."""
    if not page._refcount and not page.flags & PG_tail:
        return "free"
    flags = page.flags
    if flags & PG_UNMOVABLE:
        return "unmovable"
    if flags & PG_head:
        return "thp"
    if id(page) in machine.pins:
        return "pinned"
    if flags & PG_writeback:
        return "writeback"
    if isinstance(page.mapping, AnonVma):
        if flags & (PG_mlocked | PG_unevictable):
            return "mlocked"
        return "swapcache" if flags & PG_swapcache else "anon"
    if not flags & PG_private:
        return "file_nobh"
    head = bh = page.private
    state = 0
    while True:  # one pass over the ring: the OR of every buffer's state bits
        state |= bh.b_state
        bh = bh.b_this_page
        if bh is head:
            break
    if state & BH_Lock:
        return "locked_buffers"
    if state & BH_JBD and page.mapping.a_ops.journalled_data:
        return "journal_held"
    if flags & PG_dirty or state & BH_Dirty:
        return "file_dirty"
    return "file_clean"
