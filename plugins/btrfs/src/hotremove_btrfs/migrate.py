"""btrfs's ``a_ops->migrate_folio`` for file data (``btrfs_aops``, fs/btrfs/inode.c), per kernel.

=========== ====================== ===================================================
kernel      ``btrfs_aops`` slot    what it does
=========== ====================== ===================================================
"2004"      none (btrfs merged in 2.6.29, 2009): the seed's fallback writes it back
5.7 – 5.19  ``.migratepage =       ``migrate_page_move_mapping``; ->private moved with
            btrfs_migratepage``    ``attach_page_private(new, detach_page_private(old))``;
                                   PagePrivate2 (the ordered bit) moved; page copied
6.0 – 7.1   ``.migrate_folio =     ``filemap_migrate_folio`` (mapping, ->private, copy,
            btrfs_migrate_folio``  flags), then the ordered bit moved to ``dst``
7.2         same slot              a tail call of ``filemap_migrate_folio``: no ordered
                                   bit any more (Debian 7.2.13's btrfs.ko)
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
``set_folio_extent_mapped``; the constant 1, plus one page reference — 7.2's still stores 1,
read from its disassembly), or a ``btrfs_subpage`` state when the sector is smaller than the
page — never on x86-64, where the sector is 4 KiB. No
buffer_heads: this per-folio private does not point back at the page, so moving the pointer
(``folio_attach_private(dst, folio_detach_private(src))``) is the whole job and nothing is
written.

PG_ordered. btrfs marks a page whose dirty range has an ordered extent with unfinished I/O
(set at delalloc, cleared when the range's write completes) with a page flag of its own, which
``folio_migrate_flags`` does not carry — hence the hand move. Which flag, per kernel:

* 5.7 – 6.12: ``PG_private_2`` (``#define folio_test_ordered folio_test_private_2``,
  fs/btrfs/ctree.h; 5.10's ``PagePrivate2``). Checked in the binaries: 5.10 and 6.1 move bit 14,
  6.12 bit 15 — ``PG_private_2`` in each one's ``enum pageflags``.
* from 6.13: ``PG_owner_2`` (a6752a6e7fb0 "btrfs: Switch from using the private_2 flag to
  owner_2", Matthew Wilcox, Oct 2024, in the "Filesystem page flags cleanup" series with
  7735348d9f3a "migrate: Remove references to Private2") — the bit the model names
  ``PG_mappedtodisk`` (owner_2 is mappedtodisk for buffer_head filesystems, which btrfs is not).
* 7.2: no ordered flag on folios at all (its btrfs.ko has none of the ``btrfs_folio_*_ordered``
  helpers 6.12 has) and ``btrfs_migrate_folio`` is a bare ``filemap_migrate_folio``. When btrfs
  dropped the flag between 6.13 and 7.2 is not pinned here: kernels in between get owner_2.

The model's page has both bits, so each strategy moves its kernel's bit exactly as the kernel
does. Nothing in the model sets it (it has no ordered extents, and a page under writeback never
reaches ``migrate_folio``: SYNC waits for PG_writeback first, the other modes give up with
-EBUSY), so in a run the move is a no-op; the tests set it by hand to hold each kernel to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotremove.kernels import Kernel
from hotremove.mm.migrate import MigrateControl, filemap_migrate_folio
from hotremove.model.address_space import AddressSpace
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_mappedtodisk, PG_private_2

#: The one table this plugin claims (btree_aops, the metadata cache, holds no file pages).
AOPS = ("btrfs_aops",)


@dataclass(frozen=True)
class BtrfsMigrateFolio:
    """fs/btrfs/inode.c ``btrfs_migrate_folio`` (5.x: ``btrfs_migratepage``): the page-cache
    entry, ->private, the bytes and the flags move with ``filemap_migrate_folio``; then
    ``if (folio_test_ordered(src)) { folio_clear_ordered(src); folio_set_ordered(dst); }``
    with ``ordered`` this kernel's bit (0: the kernel has none)."""

    name: str
    ordered: int
    #: where the kernel sets it, since which release (``hotremove kernels`` shows it)
    source: str = ""
    rebinds: bool = False

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        rc = filemap_migrate_folio(mc, mapping, dst, src, mode)
        if rc:
            return rc
        if src.flags & self.ordered:
            src.flags &= ~self.ordered
            dst.flags |= self.ordered
        return Errno.OK


#: 5.7 – 5.19: ``.migratepage = btrfs_migratepage``, PagePrivate2
BTRFS_MIGRATEPAGE = BtrfsMigrateFolio(
    "btrfs_migratepage", PG_private_2, "fs/btrfs/inode.c .migratepage, v5.7 (f8e6608180a3)"
)
#: 6.0 – 6.12: ``.migrate_folio = btrfs_migrate_folio``, ``folio_test_private_2``
BTRFS_MIGRATE_FOLIO = BtrfsMigrateFolio(
    "btrfs_migrate_folio", PG_private_2, "fs/btrfs/inode.c, v6.0 (e7a60a1787fc)"
)
#: 6.13 on: the ordered bit is ``PG_owner_2`` (the model's PG_mappedtodisk)
BTRFS_MIGRATE_FOLIO_OWNER_2 = BtrfsMigrateFolio(
    "btrfs_migrate_folio", PG_mappedtodisk, "fs/btrfs/inode.c, PG_owner_2 from v6.13 (a6752a6e7fb0)"
)
#: 7.2: no ordered bit, ``filemap_migrate_folio`` alone
BTRFS_MIGRATE_FOLIO_PLAIN = BtrfsMigrateFolio(
    "btrfs_migrate_folio", 0, "fs/btrfs/inode.c: filemap_migrate_folio alone (Debian 7.2.13)"
)


def migrate_folio_of(a_ops: str, kernel: Kernel) -> BtrfsMigrateFolio | None:
    """``a_ops->migrate_folio`` of ``btrfs_aops`` in ``kernel`` (None: no callback, or not
    ours)."""
    if a_ops not in AOPS or kernel.version == "2004":
        return None
    if kernel.at_least("7.2"):
        return BTRFS_MIGRATE_FOLIO_PLAIN
    if kernel.at_least("6.13"):
        return BTRFS_MIGRATE_FOLIO_OWNER_2
    if kernel.at_least("6.0"):
        return BTRFS_MIGRATE_FOLIO
    if kernel.at_least("5.7"):
        return BTRFS_MIGRATEPAGE
    return None
