"""The btrfs plugin's hooks: the ``btrfs`` filesystem type (:mod:`hotremove_btrfs.fstype`) and
``btrfs_aops``' ``migrate_folio`` in each kernel (:mod:`hotremove_btrfs.migrate`)."""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import MigrateStrategy
from hotremove.model.address_space import AddressSpace
from hotremove_btrfs.fstype import BtrfsType
from hotremove_btrfs.migrate import AOPS, migrate_folio_of


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "btrfs",
        aops=list(AOPS),
        description="btrfs_migrate_folio (≥ 6.0; btrfs_migratepage 5.7–5.19): "
        "filemap_migrate_folio, no I/O",
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(BtrfsType())


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto":  # "writeback" (or another plugin's variant) is not ours to serve
        return None
    return migrate_folio_of(mapping.a_ops.name, kernel)
