"""btrfs's ``a_ops->migrate_folio`` for file data (``btrfs_aops``, fs/btrfs/inode.c), per kernel.

=========== ====================== ===================================================
kernel      ``btrfs_aops`` slot    what it does
=========== ====================== ===================================================
"2004"      none (btrfs merged in 2.6.29, 2009): the seed's fallback writes it back
5.7 – 5.19  ``.migratepage =       ``migrate_page_move_mapping``; ->private moved with
            btrfs_migratepage``    ``attach_page_private(new, detach_page_private(old))``;
                                   PagePrivate2 (the ordered bit) moved; page copied
≥ 6.0       ``.migrate_folio =     ``filemap_migrate_folio`` (mapping, ->private, copy,
            btrfs_migrate_folio``  flags), then ``folio_test_ordered`` moved to ``dst``
7.2         same slot              a tail call of ``filemap_migrate_folio``: the ordered
                                   flag is gone (Debian 7.2.13's btrfs.ko)
=========== ====================== ===================================================

Sources: f8e6608180a3 "btrfs: implement migratepage callback for data pages" (Roman Gushchin,
v5.7; before it btrfs data pages had no callback); e7a60a1787fc "btrfs: Convert
btrfs_migratepage to migrate_folio" (Matthew Wilcox, v6.0 merge window, with 5490da4f06d1 "fs:
Add aops->migrate_folio" and 2ec810d59602 "mm/migrate: Add filemap_migrate_folio()"). Checked in
Debian's module binaries: the relocation at ``btrfs_aops``' migrate slot points at
``btrfs_migratepage`` (5.10.223, which calls ``migrate_page_move_mapping`` and
``migrate_page_copy``) and ``btrfs_migrate_folio`` (6.1.192, 6.12.118 — both call
``filemap_migrate_folio`` then move one page-flag bit — and 7.2.13, a bare tail call).

What a page carries. Every btrfs data page has ``PG_private`` set with ->private holding
``EXTENT_PAGE_PRIVATE`` (5.10; ``set_page_extent_mapped``) / ``EXTENT_FOLIO_PRIVATE`` (6.x,
``set_folio_extent_mapped``; the constant 1, plus one page reference), or a ``btrfs_subpage``
state when the sector is smaller than the page — never on x86-64, where the sector is 4 KiB. No
buffer_heads: this per-folio private does not point back at the page, so moving the pointer
(``folio_attach_private(dst, folio_detach_private(src))``) is the whole job and nothing is
written.

PG_ordered (PG_private_2) is not in the model. btrfs sets it on a dirty range's pages when
delalloc creates the ordered extent and clears it when the range's write finishes; the model
has no ordered extents, and a page under writeback never reaches ``migrate_folio`` (SYNC waits
for PG_writeback first, the other modes give up with -EBUSY). So the strategy moves what the
model has — the mapping, ->private, the bytes, the flags — and the ordered bit is treated as
always clear.
"""

from __future__ import annotations

from hotremove.kernels import Kernel
from hotremove.mm.migrate import FunctionStrategy, MigrateControl, filemap_migrate_folio
from hotremove.model.address_space import AddressSpace
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page

#: The one table this plugin claims (btree_aops, the metadata cache, holds no file pages).
AOPS = ("btrfs_aops",)


def btrfs_migrate_folio(
    mc: MigrateControl, mapping: AddressSpace | None, dst: Page, src: Page, mode: MigrateMode
) -> Errno:
    """fs/btrfs/inode.c ``btrfs_migrate_folio`` (and 5.x ``btrfs_migratepage``): the page-cache
    entry, ->private, the bytes and the flags move with ``filemap_migrate_folio``; then
    ``if (folio_test_ordered(src)) { folio_clear_ordered(src); folio_set_ordered(dst); }`` —
    never true in the model (module doc)."""
    rc = filemap_migrate_folio(mc, mapping, dst, src, mode)
    if rc:
        return rc
    return Errno.OK


#: 5.7 – 5.19: ``.migratepage = btrfs_migratepage``
BTRFS_MIGRATEPAGE = FunctionStrategy("btrfs_migratepage", False, btrfs_migrate_folio)
#: 6.0 on: ``.migrate_folio = btrfs_migrate_folio``
BTRFS_MIGRATE_FOLIO = FunctionStrategy("btrfs_migrate_folio", False, btrfs_migrate_folio)


def migrate_folio_of(a_ops: str, kernel: Kernel) -> FunctionStrategy | None:
    """``a_ops->migrate_folio`` of ``btrfs_aops`` in ``kernel`` (None: no callback, or not
    ours)."""
    if a_ops not in AOPS or kernel.version == "2004":
        return None
    if kernel.at_least("6.0"):
        return BTRFS_MIGRATE_FOLIO
    if kernel.at_least("5.7"):
        return BTRFS_MIGRATEPAGE
    return None
