"""Fault injection: the offline must complete or roll back, and never lose dirty data.

* ``writeback_eio``: a share of data-block writes (writeout, journal checkpoint, ordered
  data) fail with -EIO while the offline runs; the page stays dirty in its old frame with its
  buffers intact and its migration fails with -EIO. The journal's own log writes are not hit.
* ``enomem_after``: after N target frames, allocation fails (-ENOMEM).
* ``plugin_raises``: the named plugin's strategy raises mid-migration (after locking the
  page's buffers, as a buggy strategy would): the engine records the failure with the
  plugin's name, releases what the strategy left locked and goes on.
Verification always runs after the faults are switched off: "a clean sync".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hotremove.mm.migrate import MigrateControl, MigrateStrategy, buffer_migrate_lock_buffers
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import buffer_ring
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_private


@dataclass(frozen=True)
class FaultSettings:
    """The faults one offline injects (the engine's view of a scenario's ``[faults]``)."""

    writeback_eio: float = 0.0
    enomem_after: int | None = None
    plugin_raises: str | None = None


class InjectedFault(RuntimeError):
    """Raised by a strategy on purpose (``faults.plugin_raises``)."""


def eio_injector(share: float, seed: int) -> Callable[[], bool] | None:
    """A deterministic coin: True for about ``share`` of the calls."""
    if share <= 0:
        return None
    rng = np.random.default_rng([seed, 0xE10])
    return lambda: bool(rng.random() < share)


@dataclass(frozen=True)
class RaisingStrategy:
    """Wraps a plugin's strategy: lock the page's buffers, then fail like a buggy plugin."""

    inner: MigrateStrategy
    plugin: str

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def rebinds(self) -> bool:
        return self.inner.rebinds

    def migrate_folio(
        self,
        mc: MigrateControl,
        mapping: AddressSpace | None,
        dst: Page,
        src: Page,
        mode: MigrateMode,
    ) -> Errno:
        if src.flags & PG_private:
            buffer_migrate_lock_buffers(buffer_ring(src.private), mode)
        raise InjectedFault(f"injected fault in plugin {self.plugin!r} ({self.inner.name})")
