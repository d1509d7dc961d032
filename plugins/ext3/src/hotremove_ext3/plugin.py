"""ext3 (journal aware): rebinding for ordered/writeback data, the ``_norefs`` rule for
journalled data, and a small jbd2 journal that runs between migration passes.

* ``ext3_ordered_aops`` / ``ext3_writeback_aops``: ``buffer_migrate_folio`` (historic ext3 had
  ``.migratepage = buffer_migrate_page`` since 2.6.16). A buffer locked for I/O is waited
  for in SYNC and ``-EAGAIN`` in ASYNC; a journal_head attached to a buffer stays with it,
  because the buffer_head itself does not change, only its page.
* ``ext3_journalled_aops``: ``buffer_migrate_folio_norefs`` — the rule ext4 adopted for
  ``data=journal`` in ≈v6.3 "so that buffers cannot be modified under jbd2's hands". A buffer
  the journal holds (BH_JBD, extra ``b_count``) is busy: ``-EAGAIN`` until the journal has
  committed and checkpointed it. (Historic ext3 had no migratepage here and fell back to
  writeback; the issue asks for the _norefs rule.)
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.migrate import BUFFER_MIGRATE_FOLIO, BUFFER_MIGRATE_FOLIO_NOREFS, MigrateStrategy
from hotremove.model.address_space import AddressSpace, SuperBlock
from hotremove.model.machine import Machine
from hotremove_ext3.journal import Jbd2Journal

STRATEGIES: dict[str, MigrateStrategy] = {
    "ext3_ordered_aops": BUFFER_MIGRATE_FOLIO,
    "ext3_writeback_aops": BUFFER_MIGRATE_FOLIO,
    "ext3_journalled_aops": BUFFER_MIGRATE_FOLIO_NOREFS,
}


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register(
        "ext3",
        aops=sorted(STRATEGIES),
        description="rebinding; data=journal buffers wait for jbd2 checkpoint",
    )


@hookimpl
def hotremove_mount(machine: Machine, sb: SuperBlock) -> None:
    if sb.s_type == "ext3":
        sb.s_journal = Jbd2Journal(sb, machine.memory.frames)


@hookimpl
def hotremove_migrate_strategy(mapping: AddressSpace, policy: str) -> MigrateStrategy | None:
    if policy != "auto":
        return None
    return STRATEGIES.get(mapping.a_ops.name)


@hookimpl
def hotremove_background_work(machine: Machine, reason: str) -> None:
    """kjournald: commit the running transaction and checkpoint, while migration sleeps."""
    for sb in machine.superblocks:
        if isinstance(sb.s_journal, Jbd2Journal):
            sb.s_journal.flush()
