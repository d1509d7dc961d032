"""XFS for hotremove: the ``xfs`` filesystem type and its ``migrate_folio`` per kernel.

=============== ================================ =========================== ==================
kernel          a_ops of a regular file          ``migrate_folio``           a page carries
=============== ================================ =========================== ==================
2004 (seed)     ``linvfs_aops``                  none: written back (†)      buffer_heads
5.10            ``xfs_address_space_operations`` ``iomap_migrate_page``      iomap_page (‡)
6.1             ``xfs_address_space_operations`` ``filemap_migrate_folio``   iomap_page (‡)
6.12            ``xfs_address_space_operations`` ``filemap_migrate_folio``   iomap_folio_state
                                                                             (‡)
=============== ================================ =========================== ==================

(†) XFS was in the seed's 2.6.7, but the seed rebinds ext2/ext3 only: the answer is ``None``
and hotremove's writeback fallback moves the page as the seed's ``remap_preparepage`` did.
(‡) only on pages holding more than one block (1 and 2 KiB blocks); a 4 KiB-block page
carries nothing. Either way nothing is written to move a dirty page: the private state moves
as one pointer and PG_dirty with the page-cache entry. Sources and the exact rules:
:mod:`hotremove_xfs.aops`.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import MigrateStrategy
from hotremove.model.address_space import AddressSpace
from hotremove_xfs.aops import AOPS, migrate_folio_of
from hotremove_xfs.fs_type import XfsType


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(XfsType())


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "xfs",
        aops=list(AOPS),
        description="iomap: filemap_migrate_folio (≥ 6.0), iomap_migrate_page (5.10); "
        "none in 2004 (writeback)",
    )


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto":  # "writeback" (or another plugin's variant) is not ours to serve
        return None
    return migrate_folio_of(mapping.a_ops.name, kernel)
