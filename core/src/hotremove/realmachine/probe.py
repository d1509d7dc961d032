"""Probes: what one unit of each kind costs, asked of the installed plugins.

:func:`probe_units` builds a tiny machine holding one unit (a page, or an anonymous folio) of
a kind with :func:`hotremove.realmachine.synthesize.synthesize` (the builder ``run --snapshot``
uses), offlines it with the real engine and records what happened (migrated, rebound, written
back, write requests, simulated seconds). The plugins decide; the plan never hard-codes a
strategy's behaviour.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from hotremove.hooks import Hooks
from hotremove.kernels import Kernel
from hotremove.mm.memory_block import offline
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import PAGE_SIZE
from hotremove.realmachine.classes import decode_unit, unit_code
from hotremove.realmachine.synthesize import (
    K_FILE_BH,
    K_FILE_DIRTY_BH,
    K_TAIL,
    FsSpec,
    Layout,
    synthesize,
)


@dataclass(frozen=True)
class UnitCost:
    """What the engine did with one unit (a page, or an anonymous folio) of one kind."""

    code: int
    pages: int
    migrated: int
    rebound: int
    written_back: int
    failed: int
    reason: str
    write_requests: int
    journal_requests: int
    bytes_written: int
    cpu_seconds: float
    io_seconds: float


def probe_units(
    codes: list[int],
    fs: FsSpec,
    hooks: Hooks,
    *,
    device: str,
    policy: str = "auto",
    mode: MigrateMode = MigrateMode.SYNC,
    kernel: Kernel | None = None,
) -> dict[int, UnitCost]:
    """Offline one unit of each kind on a machine of its own (two tiny blocks: free memory
    first, the unit second) and record the outcome. Separate machines keep journals apart.
    ``kernel``: whose offline runs (default: the machine's, the newest modelled)."""
    costs: dict[int, UnitCost] = {}
    with tempfile.TemporaryDirectory(prefix="hotremove-probe-") as tmp:
        for code in sorted(set(codes)):
            kind, mods, order = decode_unit(code)
            nr = 1 << order
            per_block = max(8, nr)
            layout = Layout.free(2 * per_block)
            layout.kind[per_block] = kind
            layout.mods[per_block] = mods
            layout.order[per_block] = order
            layout.kind[per_block + 1 : per_block + nr] = K_TAIL
            built = synthesize(
                layout,
                per_block * PAGE_SIZE,
                fs,
                hooks,
                Path(tmp) / f"u{code}",
                device=device,
                remove=[1],
                name=f"probe{code}",
                kernel=kernel,
            )
            machine = built.machine
            try:
                io, clock = machine.io, machine.clock
                before = (io.write_requests, io.journal_requests, io.bytes_written)
                cpu, iosec = clock.cpu_seconds, clock.io_seconds
                result = offline(machine, hooks, [1], mode=mode, policy=policy, checks=False)
                costs[code] = UnitCost(
                    code=code,
                    pages=nr,
                    migrated=result.migrated,
                    rebound=result.rebound,
                    written_back=result.written_back,
                    failed=len(result.failed),
                    reason=str(result.failed[0]["reason"]) if result.failed else "",
                    write_requests=io.write_requests - before[0],
                    journal_requests=io.journal_requests - before[1],
                    bytes_written=io.bytes_written - before[2],
                    cpu_seconds=clock.cpu_seconds - cpu,
                    io_seconds=clock.io_seconds - iosec,
                )
            finally:
                machine.close()
    return costs


def hold_clean_journalled(
    probes: dict[int, UnitCost], fs: FsSpec, hooks: Hooks, **options: object
) -> None:
    """``--journal-clean held``: where this kernel cannot migrate a page whose buffers jbd2
    references (the probe of a journalled dirty page fails so: 6.12), count every clean page
    with buffers as such a page too — written since jbd2 last cleaned its checkpoint list
    (the flusher wrote it home; only a commit or a flush drops its journal_head). The page
    flags cannot tell those from pages that were only read."""
    clean = [c for c in probes if decode_unit(c)[0] == K_FILE_BH]
    if fs.data_mode != "journal" or not clean:
        return
    dirty = unit_code(K_FILE_DIRTY_BH)
    held = probe_units([dirty], fs, hooks, **options)[dirty]  # type: ignore[arg-type]
    if not (held.failed and "jbd2" in held.reason):
        return
    for code in clean:
        probes[code] = replace(
            held,
            code=code,
            reason=held.reason + ", clean: assumed written since the last checkpoint",
        )
