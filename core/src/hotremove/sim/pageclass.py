"""Page classes: one vocabulary for the two classifications of frames.

* :mod:`hotremove.sim.classify` classifies a *simulated* machine's frames for the engine's report
  (``classes`` in ``run --json``: pages, migrated, failed per class);
* :mod:`hotremove.realmachine.classes` classifies a *real* machine's frames from kpageflags
  for the plan (``classes`` and ``totals`` in ``plan --json``).

A name means one kind of page wherever it appears. Each classification is a partition applied
with precedence, and each sees some kinds the other cannot (the simulator knows pins, locked
buffers and journal state; kpageflags knows slab, page tables, holes): a class of one may be
split finer by the other (the plan's ``slab``, ``reserved`` and ``pgtable`` are the engine's
``unmovable``; the engine's ``swapcache`` pages are in the plan's ``anon``). Where the two
would see a *different* page under one name, the names differ: page cache with buffers is
``file_buffers`` in both, without buffers it is ``file_nobh`` (the engine: clean or dirty)
or ``file_clean_nobh`` (the plan: clean; its dirty ones are ``file_dirty``).

| name | the page | engine | plan |
|---|---|---|---|
| free | free (buddy allocator) | x | x |
| flagless | no flags and not mapped: free memory never touched, or a kernel allocation | | x |
| file_buffers | page cache with buffer_heads, clean | x | x |
| file_clean_nobh | page cache without buffer_heads, clean | | x |
| file_nobh | page cache without buffer_heads, clean or dirty | x | |
| file_dirty | page cache, dirty (engine: with buffers; plan: with or without) | x | x |
| writeback | under writeback | x | x |
| locked_buffers | a buffer another task holds locked | x | |
| pinned | an extra reference | x | |
| journal_held | data=journal buffers jbd2 holds | x | |
| anon | anonymous (plan: also shmem and swap cache) | x | x |
| swapcache | anonymous, in the swap cache | x | |
| mlocked | mlocked / unevictable (engine: anonymous ones) | x | x |
| thp | a 2 MiB folio | x | |
| huge | a huge page or large folio of any size | | x |
| unmovable | kernel memory that cannot move (engine: also slab, reserved, pgtable) | x | x |
| slab, reserved, pgtable | slab; reserved (memblock, zero page); page tables | | x |
| hwpoison, offline, hole | hardware poisoned; PageOffline; no memmap | | x |
"""

from __future__ import annotations

FREE = "free"
FLAGLESS = "flagless"
FILE_BUFFERS = "file_buffers"
FILE_CLEAN_NOBH = "file_clean_nobh"
FILE_NOBH = "file_nobh"
FILE_DIRTY = "file_dirty"
WRITEBACK = "writeback"
LOCKED_BUFFERS = "locked_buffers"
PINNED = "pinned"
JOURNAL_HELD = "journal_held"
ANON = "anon"
SWAPCACHE = "swapcache"
MLOCKED = "mlocked"
THP = "thp"
HUGE = "huge"
UNMOVABLE = "unmovable"
SLAB = "slab"
RESERVED = "reserved"
PGTABLE = "pgtable"
HWPOISON = "hwpoison"
OFFLINE = "offline"
HOLE = "hole"
