"""ext4: migrate page-cache pages by rebinding their buffer_heads, with no I/O.

In the kernel (fs/ext4/inode.c) both of ext4's buffered-I/O operations tables point
``.migrate_folio`` at ``buffer_migrate_folio``: ``ext4_aops`` (mounted with ``nodelalloc``)
and ``ext4_da_aops`` (delayed allocation, the default). Without this plugin hotremove has no
strategy for them and the ``generic_writeback`` fallback writes every dirty ext4 page back
before it can move; with it, ext4 pages move like ext2's: buffers locked (trylock in ASYNC),
page cache entry replaced, ``bh->b_page`` repointed, bytes copied — zero writeback I/O.

``ext4_journalled_aops`` (``data=journal``) is left alone: the kernel uses
``buffer_migrate_folio_norefs`` there so that buffers jbd2 holds are not moved under it, and
hotremove models jbd2 for ext3 only, so the fallback remains the honest answer for it.
"""

from __future__ import annotations

from collections.abc import Callable

from hotremove import hookimpl
from hotremove.migrate import BUFFER_MIGRATE_FOLIO, MigrateStrategy
from hotremove.model.address_space import AddressSpace

#: a_ops table → its ``.migrate_folio``, as fs/ext4/inode.c sets them.
STRATEGIES: dict[str, MigrateStrategy] = {
    "ext4_aops": BUFFER_MIGRATE_FOLIO,
    "ext4_da_aops": BUFFER_MIGRATE_FOLIO,
}


@hookimpl
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    register("ext4", aops=sorted(STRATEGIES), description="buffer_head rebinding, no I/O")


@hookimpl
def hotremove_migrate_strategy(mapping: AddressSpace, policy: str) -> MigrateStrategy | None:
    if policy != "auto":  # "writeback" (or another plugin's variant) is not ours to serve
        return None
    return STRATEGIES.get(mapping.a_ops.name)
