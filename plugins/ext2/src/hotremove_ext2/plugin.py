"""ext2: migrate page-cache pages by rebinding their buffer_heads, with no I/O — per kernel.

* ``ext2_aops``: the seed's ``remap_move_buffer_ext2`` (2004), ``buffer_migrate_page``
  (5.10), ``buffer_migrate_folio`` (6.1–7.2);
* ``ext2_nobh_aops``: ``migrate_folio`` (2004: no buffers), ``buffer_migrate_page`` (5.10),
  ``migrate_folio`` (6.x, 7.x: the table is gone, its pages have no buffers).

* 2004: IWAMOTO's patch rebinds a dirty page's buffers itself (:mod:`hotremove.mm.seed2004`,
  bugs included: it sleeps under ``private_lock`` and dirties whole pages).
* 5.10: fs/ext2/inode.c sets ``.migratepage = buffer_migrate_page`` in both tables (since
  2.6.16, Christoph Lameter's direct migration); a nobh page has no buffers, so
  ``__buffer_migrate_page`` moves it with ``migrate_page``.
* 6.x, 7.x: the seed's idea as the kernel merged it: ``ext2_aops.migrate_folio =
  buffer_migrate_folio`` (v6.0, "fs: Add aops->migrate_folio"). Buffers are locked before
  anything moves and never under ``private_lock``; in ASYNC mode a contended buffer is
  ``-EAGAIN``, not a wait; each buffer keeps its own dirty bit. ``ext2_nobh_aops`` was
  removed in ≈v6.0 ("ext2: remove nobh support"); its pages carry no buffers and move by plain
  copy (kept for the probes and for older images). Debian mounts ext2 images with the ext4
  driver (``ext4_aops`` without a journal): also ``buffer_migrate_folio``, so the outcome is
  the same (kernel-reference "Observed on real kernels": 0 pages written).

The policy variant ``ext2-seed2004`` runs the seed's strategy in any kernel (for the lock
checker and the explorer).
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, MigrateStrategy, cite
from hotremove.mm.seed2004 import SEED2004
from hotremove.model.address_space import AddressSpace
from hotremove_ext2.fstype import EXT2

#: remove.strategy = "ext2-seed2004": the 2004 patch's own steps, in every kernel.
SEED2004_POLICY = "ext2-seed2004"

#: a_ops → ``.migrate_folio`` in the 2004 seed (and under the ``ext2-seed2004`` policy).
SEED2004_STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": SEED2004,
    "ext2_nobh_aops": cite(MIGRATE_FOLIO, "2004 patchset: nobh pages have no buffers"),
}

#: a_ops → ``.migrate_folio`` in Linux 6.0 and later (fs/ext2/inode.c).
STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": cite(BUFFER_MIGRATE_FOLIO, "fs/ext2/inode.c, v6.0 (v2.6.16 as _page)"),
    "ext2_nobh_aops": cite(MIGRATE_FOLIO, "fs/ext2/inode.c: nobh gone in v6.0, no buffers"),
}

#: a_ops → ``.migratepage`` in Linux 5.10 (fs/ext2/inode.c, both tables).
MIGRATEPAGE_STRATEGIES: dict[str, MigrateStrategy] = {
    name: cite(BUFFER_MIGRATE_FOLIO, "fs/ext2/inode.c .migratepage, v2.6.16", folios=False)
    for name in ("ext2_aops", "ext2_nobh_aops")
}


def strategies_for(kernel: Kernel) -> dict[str, MigrateStrategy]:
    """ext2's tables → their ``migrate_folio`` in ``kernel``."""
    if kernel.version == "2004":
        return SEED2004_STRATEGIES
    return STRATEGIES if kernel.folios else MIGRATEPAGE_STRATEGIES


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext2",
        aops=sorted(STRATEGIES),
        description="buffer_head rebinding, no I/O (2004: the seed's rebinding)",
        policies=[SEED2004_POLICY],  # the 2004 patch, bugs included, for the lock checker
    )


@hookimpl
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    register(EXT2)  # the type: images, tables, guest mount (hotremove_ext2.fstype)


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy == SEED2004_POLICY:
        return SEED2004_STRATEGIES.get(mapping.a_ops.name)
    if policy != "auto":
        return None
    return strategies_for(kernel).get(mapping.a_ops.name)
