"""Every hook hotremove calls: the public contract for plugin packages.

A plugin is a module (or object) with functions marked ``@hotremove.hookimpl`` whose names
match these specs, published under the entry-point group ``hotremove``. Hooks evolve
additively: new hooks and new keyword arguments may appear, existing ones keep their meaning.
Each docstring below is the reference documentation (see docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from hotremove.fs.fstype import FilesystemType
    from hotremove.kernels import Kernel
    from hotremove.mm.migrate import MigrateStrategy
    from hotremove.model.address_space import AddressSpace, SuperBlock
    from hotremove.model.machine import Machine
    from hotremove.model.migrate_mode import MigrateMode

hookspec = pluggy.HookspecMarker("hotremove")


@hookspec
def hotremove_register_filesystems(register: Callable[..., None]) -> None:
    """Declare the filesystem types and a_ops tables this plugin serves (since 0.1).

    Call ``register(fs_type, aops=[...], description="...", policies=[...])`` once per
    filesystem type: ``aops`` names the operations tables (``"ext2_aops"``) whose pages the
    plugin's strategy migrates; ``policies`` names extra strategy variants it offers (selected
    with ``remove.strategy``). The core validates the call, rejects an a_ops already claimed by
    another plugin (reported in the load report), and attributes every claim to the plugin.
    Called once per plugin manager, after loading. Return value ignored.
    """


@hookspec
def hotremove_register_filesystem_types(register: Callable[[FilesystemType], None]) -> None:
    """Bring whole filesystem types (since 0.3): call ``register(fs_type)`` once per type with
    a :class:`hotremove.fs.fstype.FilesystemType` instance — what the core needs to validate a
    scenario's ``[[filesystem]]`` table of that ``type``, make its image, map and read its
    files, check it, choose its a_ops in each kernel and mount it in a guest. The core
    validates each type (a name another plugin already registered is refused and reported in
    the load report) and attributes it to the plugin (``hotremove plugins`` lists its types).
    Called once per plugin manager, after loading — and once per process over every
    installed plugin, whatever ``HOTREMOVE_PLUGINS`` selects, for the registry of installed
    types that scenario validation and runs fall back on (:mod:`hotremove.fs.registry`).
    Return value ignored.
    """


@hookspec(firstresult=True)
def hotremove_migrate_strategy(
    mapping: AddressSpace, policy: str, kernel: Kernel
) -> MigrateStrategy | None:
    """Return the strategy that migrates ``mapping``'s pages, or ``None`` for "not mine"
    (since 0.1).

    ``kernel`` (since 0.2) is the :class:`hotremove.kernels.Kernel` being simulated
    (``kernel.version`` is ``"2004"``, ``"5.10"``, ``"6.1"``, ``"6.12"``, ``"7.2"``;
    ``kernel.at_least("6.3")``): answer with what that kernel's ``a_ops->migrate_folio`` is,
    ``None`` where it has none (the fallback then answers). Implementations that do not take
    ``kernel`` keep working. A strategy may carry ``source`` (since 0.3: where the kernel sets
    it, since which release — ``hotremove.mm.migrate.cite``); ``hotremove kernels`` prints it.

    Asked **once per address_space** per run; the engine caches the answer and calls
    ``strategy.migrate_folio(mc, mapping, dst, src, mode)`` for each page (see
    :class:`hotremove.mm.migrate.MigrateStrategy`). ``policy`` is the run's ``remove.strategy``:
    ``"auto"`` (plugins decide), ``"writeback"`` (only the fallback may answer) or a variant
    name a plugin registered. The first non-``None`` answer wins, in pluggy's order
    (``tryfirst``, then most recently registered, then ``trylast``); the ``generic_writeback``
    plugin answers last for everything.
    """


@hookspec
def hotremove_mount(machine: Machine, sb: SuperBlock) -> None:
    """A filesystem was mounted on the simulated machine (since 0.1).

    ``machine`` gives access to the frames (``machine.memory.frames``) and the clock.
    Plugins may attach per-filesystem state: ``sb.s_fs_info[...]`` for private data, or
    ``sb.s_journal`` (an object with ``dirty_data(bh)`` and ``flush()``) to take the buffers
    that writes dirty in a data-journalled file. Called by the workload builder before any
    page is cached. Return value ignored.
    """


@hookspec
def hotremove_background_work(machine: Machine, reason: str) -> None:
    """The migrating task is about to sleep between passes: background work runs (since 0.1).

    This is where kernel threads such as jbd2's commit thread or the flusher make progress
    while migration waits (``reason`` is ``"pass"``; ``"sync"`` before a full sync). Any I/O
    must go through the super_block's ``BlockDevice`` so that it is counted.
    """


@hookspec
def hotremove_on_page_migrated(
    mapping: AddressSpace | None, old_pfn: int, new_pfn: int, strategy: str
) -> None:
    """Notification: one page moved (since 0.1). For tracing only; called per page, and only
    when some plugin implements it (so it costs nothing otherwise)."""


@hookspec
def hotremove_on_writeback(mapping: AddressSpace, pfn: int, requests: int) -> None:
    """Notification: a page was written out so that it could move (since 0.1)."""


@hookspec
def hotremove_on_pass_finished(
    pass_no: int, mode: MigrateMode, migrated: int, remaining: int
) -> None:
    """Notification: one migration pass over the remaining pages finished (since 0.1)."""
