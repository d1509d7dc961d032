"""minix: a filesystem type (images, maps, checks, guest mount) and its a_ops, per kernel.

fs/minix/inode.c's ``minix_aops`` is a plain buffer_head table. Whether hot-remove can move
its dirty pages without writing them depends on the kernel:

=============== ============================ ================================================
kernel          ``minix_aops.migrate_folio`` what an offline does with a dirty minix page
=============== ============================ ================================================
2004 (the seed) —                            written back first (the seed rebinds only ext2)
Linux 5.10      — (no ``.migratepage``)      ``fallback_migrate_page``: ``writeout()``,
                                             -EAGAIN, moved clean in a later pass
Linux 6.1       — (no ``.migrate_folio``)    ``fallback_migrate_folio``: the same
≥ 6.8: 6.12,    ``buffer_migrate_folio``     rebound to the new page: nothing written
7.2
=============== ============================ ================================================

The callback came with "minix: Remove writepage implementation" (Matthew Wilcox, patch 09/14
of "Clean up the writeback paths", 15 Dec 2023: "If the filesystem implements migrate_folio
and writepages, there is no need for a writepage implementation"; it adds
``.writepages = minix_writepages`` and ``.migrate_folio = buffer_migrate_folio``), merged
for v6.8 with Andrew Morton's "MM updates for 6.8-rc1" pull (mm-stable-2024-01-08). Debian's
binaries agree: 6.1.0-57's minix.ko imports ``block_write_full_page`` and no migration
helper, 6.12.118's imports ``buffer_migrate_folio`` and ``mpage_writepages``. Measured
(kernel-reference, "Observed on real kernels": 400 files × 192 KiB, 3,600 dirty pages):
5.10 wrote 3,589 pages during the offline, 6.1 3,591–3,597, 6.12 and 7.2 none.

Where the kernel has no callback the plugin answers ``None``, "not mine in this kernel", and
hotremove's ``generic_writeback`` fallback answers as that kernel's
``fallback_migrate_folio`` would.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MigrateStrategy
from hotremove.model.address_space import AddressSpace
from hotremove_minix.fstype import AOPS, MinixType

#: the first kernel whose minix_aops has ``.migrate_folio = buffer_migrate_folio``
MIGRATE_FOLIO_SINCE = "6.8"


def migrate_folio_of(kernel: Kernel) -> MigrateStrategy | None:
    """``minix_aops->migrate_folio`` in ``kernel`` (None: the table has no callback)."""
    if kernel.version == "2004" or not kernel.at_least(MIGRATE_FOLIO_SINCE):
        return None
    return BUFFER_MIGRATE_FOLIO


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "minix",
        aops=[AOPS],
        description="buffer_migrate_folio from 6.8; the writeback fallback before",
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[MinixType], None]) -> None:
    register(MinixType())


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto" or mapping.a_ops.name != AOPS:
        return None  # "writeback" (or another plugin's variant), or not our table
    return migrate_folio_of(kernel)
