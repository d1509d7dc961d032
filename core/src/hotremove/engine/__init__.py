"""The engine: memory hot-remove as mm/ does it, one module per kernel file.

``memory_hotplug`` is ``offline_pages`` (isolation, the rescan loop, the offline or its
undo); ``migrate_pages`` is mm/migrate.c's driver and the steps of one folio
(``migrate_folio_unmap``, ``move_to_new_folio``, ``migrate_folio_move``); ``batch`` moves
runs of ordinary pages on arrays; ``result`` is what the run did. Strategies (the
``migrate_folio`` of each a_ops) come from plugins and compose :mod:`hotremove.migrate`.
"""

from __future__ import annotations

from hotremove.engine.memory_hotplug import DEFAULT_MAX_ROUNDS, OfflineError, offline
from hotremove.engine.migrate_pages import Interrupted, ProgressFn
from hotremove.engine.result import ANON, SWAP, AopsStats, OfflineResult

__all__ = [
    "ANON",
    "DEFAULT_MAX_ROUNDS",
    "SWAP",
    "AopsStats",
    "Interrupted",
    "OfflineError",
    "OfflineResult",
    "ProgressFn",
    "offline",
]
