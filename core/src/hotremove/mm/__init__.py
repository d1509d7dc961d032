"""mm/: memory hot-remove as the kernel's mm/ does it, one module per step.

``memory_hotplug`` is ``offline_pages`` (isolation, the rescan loop, the offline or its
undo); ``migrate_pages`` is mm/migrate.c's driver and the steps of one folio
(``migrate_folio_unmap``, ``move_to_new_folio``, ``migrate_folio_move``); ``batch`` moves
runs of ordinary pages on arrays; ``result`` is what the run did. Strategies (the
``migrate_folio`` of each a_ops) come from plugins and compose :mod:`hotremove.mm.migrate`.
"""
