"""XFS's page-cache operations per kernel (fs/xfs/xfs_aops.c), and what a page carries.

====================================== ================================ ===================
kernel                                 regular files' ``a_ops``         ``migrate_folio``
====================================== ================================ ===================
2004 (2.6.7 + the hot-remove patches)  ``linvfs_aops`` (buffer_heads)   none: written back
2.6.x … 4.18 (not modelled)            ``xfs_address_space_operations`` ``buffer_migrate_page``
4.19 … 5.19 (5.10)                     ``xfs_address_space_operations`` ``iomap_migrate_page``
≥ 6.0 (6.1, 6.12, 7.x)                 ``xfs_address_space_operations`` ``filemap_migrate_folio``
====================================== ================================ ===================

* 2004: XFS was in the seed's kernel (fs/xfs/linux-2.6/xfs_aops.c, ``linvfs_aops``: file
  pages carry buffer_heads — ``block_prepare_write``, ``try_to_free_buffers``), but the
  seed's ``remap_preparepage`` rebinds only ext2 (and ext3 "with trivial changes"): an XFS
  page is written back and its buffers freed, as for every filesystem the seed does not know.
  (The memory-hotplug tree added ``linvfs_migrate_page`` → ``generic_migrate_page(…,
  migrate_page_buffer)`` a year later, in 2.6.12-rc5-mhp1; it never reached mainline.)
* ≤ 4.18: ``.migratepage = buffer_migrate_page`` (seen in 4.8's table), pages with
  buffer_heads (``mpage_readpage(page, xfs_get_blocks)``).
* ≈ 4.19: Christoph Hellwig's series ending buffer_heads in XFS's data path ("xfs: add support
  for sub-pagesize writeback without buffer_heads", May 2018; the release is from the series'
  date, not checked against a 4.19 tree) moved the table to iomap:
  ``.migratepage = iomap_migrate_page`` (5.10: fs/iomap/buffered-io.c — move the mapping,
  ``attach_page_private(newpage, detach_page_private(page))``, copy). No buffer_heads: the
  page's private is iomap's per-page state, ``struct iomap_page``, attached by
  ``iomap_page_create()`` only when ``nr_blocks = i_blocks_per_page() > 1`` — a 1 or 2 KiB
  block file page has one, a 4 KiB block page has nothing.
* 6.0: "mm/migrate: Add filemap_migrate_folio()" (Matthew Wilcox, June 2022: "There is
  nothing iomap-specific about iomap_migratepage() … move it to mm/migrate.c, convert it to
  be filemap_migrate_folio() and convert the iomap filesystems to use it"):
  ``.migrate_folio = filemap_migrate_folio``, the same steps. Debian's xfs.ko for 6.1.0-57
  and 6.12.118 import ``filemap_migrate_folio`` and relocate it into slot 12 of
  ``xfs_address_space_operations`` — ``migrate_folio`` in ``struct address_space_operations``
  (read with readelf from the modules of linux-image-6.1.0-57-amd64-unsigned and
  linux-image-6.12.118+deb12-amd64-unsigned). The private state is ``struct iomap_page``
  in 6.1 (``iomap_page_create``: ``if (iop || nr_blocks <= 1) return iop;``) and, from 6.5
  ("iomap: Rename iomap_page to iomap_folio_state and others", Ritesh Harjani),
  ``struct iomap_folio_state`` (``ifs_alloc``: ``if (ifs || nr_blocks <= 1) return ifs;``).

No version writes a dirty XFS page to move it: the iomap state does not point back at the
page, so it moves with ``->private`` and PG_dirty moves with the mapping. ``xfs_dax_aops``
(DAX files) has no ``migrate_folio`` — and no page cache to migrate; it is not modelled.
"""

from __future__ import annotations

from hotremove.kernels import Kernel
from hotremove.mm.migrate import (
    BUFFER_MIGRATE_FOLIO,
    FILEMAP_MIGRATE_FOLIO,
    FunctionStrategy,
    MigrateStrategy,
    cite,
    filemap_migrate_folio,
)
from hotremove.model.address_space import AddressSpaceOps

#: The table of regular files from 2.6.x on, and its name in the seed's 2.6.7.
XFS_AOPS = "xfs_address_space_operations"
LINVFS_AOPS = "linvfs_aops"
AOPS = (XFS_AOPS, LINVFS_AOPS)

#: the first kernels whose table points at iomap, then at filemap_migrate_folio
IOMAP_SINCE = "4.19"
FILEMAP_MIGRATE_FOLIO_SINCE = "6.0"

#: 4.19 … 5.19: fs/iomap's ``iomap_migrate_page`` — migrate_page_move_mapping, move
#: ->private, migrate_page_copy: what 6.0 renamed filemap_migrate_folio, so the same steps.
IOMAP_MIGRATE_PAGE = FunctionStrategy(
    "iomap_migrate_page", False, filemap_migrate_folio, "fs/iomap/buffered-io.c, v4.19"
)
#: 6.0 on: ``.migrate_folio = filemap_migrate_folio`` (fs/xfs/xfs_aops.c)
XFS_MIGRATE_FOLIO = cite(FILEMAP_MIGRATE_FOLIO, "fs/xfs/xfs_aops.c, v6.0 (2ec810d59602)")


def is_seed(kernel: Kernel) -> bool:
    return kernel.version == "2004"


def xfs_aops(kernel: Kernel) -> AddressSpaceOps:
    """The table a regular XFS file gets in ``kernel``.

    What the page carries (``private``): buffer_heads in 2004 and before 4.19; from 4.19 an
    iomap per-folio state on pages holding more than one block (1 and 2 KiB blocks) and
    nothing on 4 KiB-block pages. ``buffers=False`` stands for both iomap cases until the
    core's ``private`` kind can tell them apart: either way ``filemap_migrate_folio`` moves
    ``->private`` as an opaque pointer, with no buffer to lock, repoint or write.
    """
    if is_seed(kernel):
        return AddressSpaceOps(LINVFS_AOPS, "xfs", buffers=True)
    return AddressSpaceOps(XFS_AOPS, "xfs", buffers=not kernel.at_least(IOMAP_SINCE))


def migrate_folio_of(a_ops: str, kernel: Kernel) -> MigrateStrategy | None:
    """``a_ops->migrate_folio`` of XFS's table in ``kernel`` (None: no callback there)."""
    if a_ops not in AOPS or is_seed(kernel):
        return None  # the seed rebinds ext2/ext3 only: the writeback fallback answers
    if a_ops != XFS_AOPS:
        return None
    if kernel.at_least(FILEMAP_MIGRATE_FOLIO_SINCE):
        return XFS_MIGRATE_FOLIO
    if kernel.at_least(IOMAP_SINCE):
        return IOMAP_MIGRATE_PAGE
    return BUFFER_MIGRATE_FOLIO  # buffer_migrate_page, before folios
