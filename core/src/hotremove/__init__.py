"""hotremove: simulate Linux memory hot-removal and cost page-migration strategies.

Where things are — a kernel developer finds each step where the kernel keeps it:

* ``mm/`` — ``memory_hotplug`` (``offline_pages``), ``migrate_pages`` and ``migrate_folio``
  (mm/migrate.c's driver and the steps of one folio), ``migrate`` (the ``*_migrate_folio``
  callbacks strategies compose), ``batch`` (runs of ordinary pages on arrays),
  ``page_writeback`` (``writeout``, ``sync``), ``seed2004`` (the 2004 patch's remap code);
* ``fs/`` — ``jbd2`` and the flusher (``fs_writeback``);
* ``locking/`` — lockdep; ``model/`` — the simulated kernel objects (struct page, buffer_head,
  address_space, the block device and its cost model);
* ``sim/`` — one run end to end and its judgement (checks, verification, report, bench);
* ``workload/``, ``cli/``, ``explore/``, ``sweep/``, ``realkernel/``, ``realmachine/``.

A plugin author's public surface: :mod:`hotremove.hookspecs` (every hook),
:mod:`hotremove.kernels` (the versions a strategy answers for), :mod:`hotremove.mm.migrate`
(the callbacks a strategy composes), :mod:`hotremove.model` and :mod:`hotremove.testing`
(the conformance kit). See docs/plugins.md.
"""

from __future__ import annotations

__version__ = "0.2.0"

#: Marker for plugin hook implementations: ``@hotremove.hookimpl`` (a
#: ``pluggy.HookimplMarker``, made on first use, so that importing the package imports
#: nothing: the command's signal handling starts at once, :mod:`hotremove.startup`).
hookimpl: pluggy.HookimplMarker  # noqa: F821


def __getattr__(name: str) -> object:
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("hotremove")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'hotremove' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl"]
