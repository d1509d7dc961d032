"""ext2: migrate page-cache pages by rebinding their buffer_heads, with no I/O — per kernel.

========================= ========================================= =========================
a_ops                     kernel "2004"                             Linux 6.1, 6.12
========================= ========================================= =========================
``ext2_aops``             the seed's ``remap_move_buffer_ext2``     ``buffer_migrate_folio``
``ext2_nobh_aops``        ``migrate_folio`` (no buffers to rebind)  ``migrate_folio``
========================= ========================================= =========================

* 2004: IWAMOTO's patch rebinds a dirty page's buffers itself (:mod:`hotremove.mm.seed2004`,
  bugs included: it sleeps under ``private_lock`` and dirties whole pages).
* 6.x: the seed's idea as the kernel merged it: ``ext2_aops.migrate_folio =
  buffer_migrate_folio`` (``buffer_migrate_page`` since 2.6.16). Buffers are locked before
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
from hotremove.kernels import Kernel
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, MigrateStrategy
from hotremove.mm.seed2004 import SEED2004
from hotremove.model.address_space import AddressSpace

#: remove.strategy = "ext2-seed2004": the 2004 patch's own steps, in every kernel.
SEED2004_POLICY = "ext2-seed2004"

#: a_ops → ``.migrate_folio`` in the 2004 seed (and under the ``ext2-seed2004`` policy).
SEED2004_STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": SEED2004,
    "ext2_nobh_aops": MIGRATE_FOLIO,
}

#: a_ops → ``.migrate_folio`` in Linux 6.x (fs/ext2/inode.c).
STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": BUFFER_MIGRATE_FOLIO,
    "ext2_nobh_aops": MIGRATE_FOLIO,
}


def strategies_for(kernel: Kernel) -> dict[str, MigrateStrategy]:
    """ext2's tables → their ``migrate_folio`` in ``kernel``."""
    return SEED2004_STRATEGIES if kernel.version == "2004" else STRATEGIES


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext2",
        aops=sorted(STRATEGIES),
        description="buffer_head rebinding, no I/O (2004: the seed's rebinding)",
        policies=[SEED2004_POLICY],  # the 2004 patch, bugs included, for the lock checker
    )


@hookimpl
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    if policy == SEED2004_POLICY:
        return SEED2004_STRATEGIES.get(mapping.a_ops.name)
    if policy != "auto":
        return None
    return strategies_for(kernel).get(mapping.a_ops.name)
