"""ext2: migrate page-cache pages by rebinding their buffer_heads, with no I/O.

This is the seed patch's ``remap_move_buffer_ext2`` as the kernel finally merged it:
``ext2_aops.migrate_folio = buffer_migrate_folio``. Buffers are locked before anything moves
and never under ``private_lock`` (the seed slept in atomic context there); in ASYNC mode a
contended buffer is ``-EAGAIN``, not a wait; each buffer keeps its own dirty bit (the seed's
"XXX this will make a whole page dirty" is not repeated). ``ext2_nobh_aops`` pages carry no
buffers and move by plain copy (``migrate_folio``).
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.migrate import BUFFER_MIGRATE_FOLIO, MIGRATE_FOLIO, MigrateStrategy
from hotremove.model.address_space import AddressSpace
from hotremove_ext2.seed2004 import POLICY as SEED2004_POLICY
from hotremove_ext2.seed2004 import SEED2004

STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": BUFFER_MIGRATE_FOLIO,
    "ext2_nobh_aops": MIGRATE_FOLIO,
}

#: remove.strategy = "ext2-seed2004": the 2004 patch's own steps (see seed2004.py).
SEED2004_STRATEGIES: dict[str, MigrateStrategy] = {
    "ext2_aops": SEED2004,
    "ext2_nobh_aops": MIGRATE_FOLIO,
}


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext2",
        aops=sorted(STRATEGIES),
        description="buffer_head rebinding, no I/O",
        policies=[SEED2004_POLICY],  # the 2004 patch, bugs included, for the lock checker
    )


@hookimpl
def hotremove_migrate_strategy(mapping: AddressSpace, policy: str) -> MigrateStrategy | None:
    if policy == SEED2004_POLICY:
        return SEED2004_STRATEGIES.get(mapping.a_ops.name)
    if policy != "auto":
        return None
    return STRATEGIES.get(mapping.a_ops.name)
