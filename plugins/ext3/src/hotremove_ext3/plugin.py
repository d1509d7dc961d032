"""ext3 (the ext3 driver, fs/ext3 + jbd): its three tables, per kernel, and its journal.

Only kernel "2004" mounts ext3 images with the ext3 driver; from v4.3 (c290ea01abb7 "fs: Remove
ext3 filesystem driver") the ext4 driver mounts them and their files get ext4's tables (the
``ext4`` plugin). The 6.x answers below are never asked for in a run; they say what the
historic driver had, for the probes and ``hotremove kernels`` (5.10: ``buffer_migrate_page``).

========================== ============================================ ==========================
a_ops                      kernel "2004"                                6.x (historic ext3)
========================== ============================================ ==========================
``ext3_ordered_aops``      the seed's rebinding, "with trivial changes" ``buffer_migrate_folio``
``ext3_writeback_aops``    the seed's rebinding, "with trivial changes" ``buffer_migrate_folio``
``ext3_journalled_aops``   none: the fallback writes the page back      none
========================== ============================================ ==========================

* 2004: IWAMOTO's mail: "I've also tried with ext3 with trivial changes to the patch, and it
  also seems to work" — :data:`hotremove.mm.seed2004.SEED2004`, bugs included (an ordered
  buffer's journal_head travels with the rebound buffer_head). data=journal pages were not
  rebound: written back and their buffers released through the journal
  (``ext3_releasepage`` → ``journal_try_to_free_buffers``).
* 2.6.16–4.2: ``ext3_ordered_aops`` / ``ext3_writeback_aops`` had ``.migratepage =
  buffer_migrate_page``; ``ext3_journalled_aops`` had none (fallback).

The filesystem type ``ext3`` (:mod:`hotremove_ext3.fstype`) says which driver mounts an image
in each kernel, and attaches a :mod:`hotremove.fs.jbd2` journal on mount: with the ext3
driver its ordered mode puts journal heads on dirty data buffers (the old driver's
``t_sync_datalist``). The journal commits on its own timer (kjournald, 5 s), as the
simulated clock runs.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MigrateStrategy, cite
from hotremove.mm.seed2004 import SEED2004
from hotremove.model.address_space import AddressSpace
from hotremove_ext3.fstype import EXT3

#: a_ops → ``.migrate_folio`` in kernel "2004" (None: no callback, the fallback answers).
SEED2004_STRATEGIES: dict[str, MigrateStrategy | None] = {
    "ext3_ordered_aops": SEED2004,
    "ext3_writeback_aops": SEED2004,
    "ext3_journalled_aops": None,
}

#: the historic tables' source (the driver was removed by c290ea01abb7 in v4.3)
_HISTORIC = "fs/ext3/inode.c .migratepage, v2.6.16–v4.2"

#: a_ops → ``.migratepage`` of the historic driver (2.6.16–4.2), answered for 5.10 and later
#: (never asked in a run: those kernels mount ext3 images with ext4).
STRATEGIES: dict[str, MigrateStrategy | None] = {
    "ext3_ordered_aops": cite(BUFFER_MIGRATE_FOLIO, _HISTORIC),
    "ext3_writeback_aops": cite(BUFFER_MIGRATE_FOLIO, _HISTORIC),
    "ext3_journalled_aops": None,
}
#: the same, with the ``*_page`` names of a kernel before v6.0
MIGRATEPAGE_STRATEGIES: dict[str, MigrateStrategy | None] = {
    name: cite(BUFFER_MIGRATE_FOLIO, _HISTORIC, folios=False) if s else None
    for name, s in STRATEGIES.items()
}


def strategies_for(kernel: Kernel) -> dict[str, MigrateStrategy | None]:
    """ext3's tables → their ``migrate_folio`` in ``kernel``."""
    if kernel.version == "2004":
        return SEED2004_STRATEGIES
    return STRATEGIES if kernel.folios else MIGRATEPAGE_STRATEGIES


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext3",
        aops=sorted(STRATEGIES),
        description="2004: the seed's rebinding; data=journal written back (ext3 driver only)",
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(EXT3)


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto":
        return None
    return strategies_for(kernel).get(mapping.a_ops.name)
