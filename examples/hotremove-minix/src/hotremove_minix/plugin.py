"""minix: a filesystem hotremove does not model, whose a_ops table a plugin can still claim.

fs/minix/inode.c's ``minix_aops`` is a plain buffer_head table. Whether hot-remove can move
its dirty pages without writing them depends on the kernel:

=============== ============================ ================================================
kernel          ``minix_aops.migrate_folio`` what an offline does with a dirty minix page
=============== ============================ ================================================
2004 (the seed) —                            written back first (the seed rebinds only ext2)
Linux 6.1       — (NULL)                     ``fallback_migrate_folio``: ``writeout()``,
                                             -EAGAIN, moved clean in a later pass
≥ 6.8, 6.12     ``buffer_migrate_folio``     rebound to the new page: nothing written
=============== ============================ ================================================

The callback came with "minix: Remove writepage implementation" (Matthew Wilcox, Dec 2023,
merged ≈v6.8: "If the filesystem implements migrate_folio and writepages, there is no need
for a writepage implementation"). kernel-reference "Observed on real kernels": minix v3 on
Debian's 6.1 wrote ≈3,595 of 3,600 dirty pages during the offline, on 6.12 none.

Where the kernel has no callback the plugin answers ``None``: "not mine in this kernel",
and hotremove's ``generic_writeback`` fallback answers as that kernel's
``fallback_migrate_folio`` would.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MigrateStrategy
from hotremove.model.address_space import AddressSpace

AOPS = "minix_aops"
#: the first kernel whose minix_aops has ``.migrate_folio = buffer_migrate_folio``
MIGRATE_FOLIO_SINCE = "6.8"


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "minix",
        aops=[AOPS],
        description="buffer_migrate_folio from 6.8; the writeback fallback before",
    )


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto" or mapping.a_ops.name != AOPS:
        return None  # "writeback" (or another plugin's variant), or not our table
    if kernel.version == "2004" or not kernel.at_least(MIGRATE_FOLIO_SINCE):
        return None  # no migrate_folio in this kernel: the fallback answers
    return BUFFER_MIGRATE_FOLIO
