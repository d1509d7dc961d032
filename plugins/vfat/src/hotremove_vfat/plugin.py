"""vfat: the FAT filesystem type, and what each kernel's ``fat_aops`` does with its pages.

=========================== ============================ ========================================
kernel                      ``fat_aops`` migration       what an offline does with a dirty page
=========================== ============================ ========================================
2004 (the seed)             — (no page migration yet)    written back first: the seed rebinds
                                                         only ext2/ext3 (``remap_preparepage``)
Linux 5.10, 6.1             — (no ``migratepage`` /      ``fallback_migrate_folio``: ``writeout()``
                            ``migrate_folio``)           through ``fat_writepage``, -EAGAIN,
                                                         moved clean in a later pass
≥ 6.2: 6.12, 7.2            ``buffer_migrate_folio``     rebound to the new page: nothing written
=========================== ============================ ========================================

fs/fat/inode.c's table had ``.writepage = fat_writepage`` and no migration callback until
"fat: remove ->writepage" (Christoph Hellwig, posted 2 Dec 2022 as patch 2/7 of his
->writepage removal series; commit ee649af0d9a6, committed by Andrew Morton on 11 Dec 2022,
the day before his mm-nonmm-stable pull for the 6.2 merge window): "Set ->migrate_folio to
the generic buffer_head based helper, and remove the ->writepage implementation." Later trees
keep ``.migrate_folio = buffer_migrate_folio``. Debian's kernels measured under QEMU agree
(kernel-reference "Observed on real kernels", 400 files × 192 KiB, 3,600 dirty pages): 5.10
and 6.1 wrote all 3,600 during the offline, 6.12 and 7.2 wrote none.

Where a kernel has no callback the plugin answers ``None`` ("not mine in this kernel") and the
``generic_writeback`` plugin answers as that kernel's ``fallback_migrate_folio``.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MigrateStrategy, cite
from hotremove.model.address_space import AddressSpace
from hotremove_vfat.fstype import FAT_AOPS, VfatType

#: The table this plugin claims.
AOPS = FAT_AOPS.name
#: The first release whose ``fat_aops`` has ``.migrate_folio = buffer_migrate_folio``
#: (ee649af0d9a6 "fat: remove ->writepage"; see the module doc).
MIGRATE_FOLIO_SINCE = "6.2"
#: fs/fat/inode.c ``fat_aops.migrate_folio``
FAT_MIGRATE_FOLIO = cite(BUFFER_MIGRATE_FOLIO, "fs/fat/inode.c, v6.2 (ee649af0d9a6)")


def migrate_folio_of(kernel: Kernel) -> MigrateStrategy | None:
    """``fat_aops->migrate_folio`` in ``kernel`` (None: the kernel has no callback)."""
    if kernel.version == "2004" or not kernel.at_least(MIGRATE_FOLIO_SINCE):
        return None
    return FAT_MIGRATE_FOLIO


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "vfat",
        aops=[AOPS],
        description="buffer_migrate_folio from 6.2; the writeback fallback before",
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(VfatType())


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto" or mapping.a_ops.name != AOPS:
        return None  # "writeback" (or another plugin's variant), or not our table
    return migrate_folio_of(kernel)
