"""ext4 (fs/ext4/inode.c): its buffered-I/O tables per kernel, and jbd2 for the images it mounts.

* ``ext4_aops``, ``ext4_da_aops``: none in "2004" (†); ``buffer_migrate_page`` in 5.10;
  ``buffer_migrate_folio`` in 6.1, 6.12 and 7.2.
* ``ext4_journalled_aops``: none (†); none in 5.10 and 6.1 — the fallback writes the page out;
  ``buffer_migrate_folio_norefs`` in 6.12 and 7.2.

Checked against Debian's binaries: 5.10's ext4.ko imports ``buffer_migrate_page`` and no
``_norefs``; 7.2's imports ``buffer_migrate_folio`` and ``buffer_migrate_folio_norefs``.

(†) ext4 did not exist in 2004 (it forked from ext3 as "ext4dev" in 2.6.19, 2006); a
scenario that asks for ext4 images there gets the seed's answer for every filesystem it did
not rebind: the fallback writes the page back.

* ``ext4_aops`` (``nodelalloc``) and ``ext4_da_aops`` (delayed allocation, the default) point
  ``.migrate_folio`` at ``buffer_migrate_folio``: buffers locked (trylock in ASYNC), page
  cache entry replaced, ``bh->b_folio`` repointed, bytes copied — no I/O.
* ``ext4_journalled_aops`` (``data=journal``): ``buffer_migrate_folio_norefs`` since ≈v6.3
  (Jan Kara's data=journal series, Dec 2022: "mm: export buffer_migrate_folio_norefs()" —
  "Ext4 needs this function to allow safe migration for journalled data pages"). A buffer
  with a journal_head (``b_count > 0``) is busy: ``-EAGAIN`` until jbd2 drops the head. Before
  that the table had no ``migrate_folio``: ``fallback_migrate_folio`` writes the dirty page out
  (``writeout()``) and moves it clean (Linux 6.1, kernel-reference "Observed on real kernels").

The filesystem type ``ext4`` (:mod:`hotremove_ext4.fstype`) makes the images, picks the
table (``ext4_set_aops``) and attaches :mod:`hotremove.fs.jbd2` on mount, formatted as ext4's
driver formats it (:mod:`hotremove_e2fs.journal`). From v4.3 (c290ea01abb7 "fs: Remove ext3
filesystem driver") the ext4 driver mounts ext3 images too: their files get these tables (the
``ext3`` type says so) and this plugin migrates them. ext4 tracks ordered data per inode
(``jbd2_inode``), not with journal heads on data buffers, so ``ordered_data_heads=False``.
(ext2 images keep the ext2 driver in hotremove; Debian mounts them with ext4 without a
journal, which migrates them with ``buffer_migrate_folio`` too.)
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import (
    BUFFER_MIGRATE_FOLIO,
    BUFFER_MIGRATE_FOLIO_NOREFS,
    FunctionStrategy,
    MigrateStrategy,
    cite,
)
from hotremove.model.address_space import AddressSpace
from hotremove_ext4.fstype import EXT4

#: The tables this plugin claims.
AOPS = ("ext4_aops", "ext4_da_aops", "ext4_journalled_aops")


#: ``ext4_journalled_aops.migrate_folio`` from v6.3 (Jan Kara's data=journal series, "mm:
#: export buffer_migrate_folio_norefs()" / "ext4: Stop providing .writepage hook")
JOURNALLED = cite(BUFFER_MIGRATE_FOLIO_NOREFS, "fs/ext4/inode.c, v6.3")
#: (table, folio names) → ``buffer_migrate_folio`` cited where ext4 sets it (ext4 has had it
#: since it forked from ext3 in 2.6.19; ``->migrate_folio`` since v6.0)
_BUFFERS: dict[tuple[str, bool], FunctionStrategy] = {
    (name, folios): cite(
        BUFFER_MIGRATE_FOLIO,
        "fs/ext4/inode.c" + (", v6.0 (v2.6.19 as _page)" if folios else ", v2.6.19"),
        folios=folios,
    )
    for name in ("ext4_aops", "ext4_da_aops")
    for folios in (False, True)
}


def migrate_folio_of(a_ops: str, kernel: Kernel) -> MigrateStrategy | None:
    """``a_ops->migrate_folio`` of one of ext4's tables in ``kernel`` (None: no callback)."""
    if kernel.version == "2004" or a_ops not in AOPS:
        return None
    if a_ops == "ext4_journalled_aops":
        return JOURNALLED if kernel.at_least("6.3") else None
    return _BUFFERS[(a_ops, kernel.folios)]


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext4",
        aops=list(AOPS),
        description="buffer_head rebinding; data=journal: norefs (≥ 6.3) or writeback (6.1)",
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(EXT4)


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy != "auto":  # "writeback" (or another plugin's variant) is not ours to serve
        return None
    return migrate_folio_of(mapping.a_ops.name, kernel)
