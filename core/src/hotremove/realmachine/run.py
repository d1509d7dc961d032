"""``hotremove run --snapshot``: rebuild real memory blocks and offline them — the
measurement a plan's prediction is checked against."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hotremove.hooks import Hooks
from hotremove.mm.migrate_pages import ProgressFn
from hotremove.model.cost import preset as device_preset
from hotremove.plugins import PluginSet, load_plugins
from hotremove.realmachine.classes import classify
from hotremove.realmachine.plan import resolve_fs
from hotremove.realmachine.snapshot import (
    Snapshot,
    SnapshotError,
)
from hotremove.realmachine.snapshot import load as load_snapshot
from hotremove.realmachine.synthesize import (
    FsSpec,
    Layout,
    synthesize,
)
from hotremove.sim.report import Report
from hotremove.sim.runner import offline_built
from hotremove.workload import Built


# -- run --snapshot: the same block, simulated --------------------------------------------------
@dataclass
class SnapshotBuilt(Built):
    """A :class:`~hotremove.workload.Built` made from snapshot blocks: simulated block ``i``
    is snapshot block ``snapshot_blocks[i]``; the blocks after them are free memory."""

    snapshot_blocks: list[int] = field(default_factory=list)


def build_from_snapshot(
    snapshot_path: Path | str | Snapshot,
    blocks: list[int],
    hooks: Hooks,
    workdir: Path,
    *,
    fs: FsSpec | str | None = None,
    device: str = "nvme",
    flagless: str = "free",
    seed: int = 1,
) -> SnapshotBuilt:
    """A machine holding snapshot memory blocks ``blocks`` frame by frame (as the plan
    classifies them), followed by as many blocks of free memory to migrate into.
    ``built.scenario.remove.blocks`` names the simulated blocks to offline."""
    snap = snapshot_path if isinstance(snapshot_path, Snapshot) else load_snapshot(snapshot_path)
    if not blocks:
        raise SnapshotError("--blocks: name at least one memory block")
    if len(set(blocks)) != len(blocks):
        raise SnapshotError("--blocks: a memory block is named twice")
    rows = [snap.row(b) for b in blocks]
    fs = resolve_fs(snap, fs)
    device_preset(device)
    lay = classify(snap.trimmed(blocks), flagless).layout
    layout = Layout.concat([lay, Layout.free(len(rows) * snap.pages_per_block)])
    built = synthesize(
        layout,
        snap.block_size,
        fs,
        hooks,
        workdir,
        device=device,
        remove=list(range(len(rows))),
        seed=seed,
        name="snapshot",
    )
    return SnapshotBuilt(
        built.scenario, built.machine, built.golden, built.images, snapshot_blocks=list(blocks)
    )


def run_snapshot(
    snapshot_path: Path | str | Snapshot,
    blocks: list[int],
    *,
    plugins: PluginSet | None = None,
    workdir: Path | None = None,
    fs: FsSpec | str | None = None,
    device: str = "nvme",
    policy: str = "auto",
    flagless: str = "free",
    mode: str = "sync",
    checks: bool = True,
    do_verify: bool = True,
    progress: Callable[[int], ProgressFn | None] | None = None,
) -> Report:
    """Build the snapshot blocks, offline them with the engine, verify: the measurement a
    plan's prediction is checked against (the plan assumes ``mode="sync"``, what hot-remove
    uses). ``progress(total)`` may return a callback advanced per migrated page."""
    plugins = plugins or load_plugins()
    with tempfile.TemporaryDirectory(prefix="hotremove-snap-") as tmp:
        built = build_from_snapshot(
            snapshot_path,
            blocks,
            plugins.hooks,
            workdir or Path(tmp),
            fs=fs,
            device=device,
            flagless=flagless,
        )
        built.scenario = built.scenario.with_overrides(
            remove={"strategy": policy, "mode": mode, "checks": checks}
        )
        try:
            report = offline_built(
                built,
                plugins,
                name=f"snapshot blocks {', '.join(map(str, blocks))}",
                device=device,
                progress=progress,
                do_verify=do_verify,
            )
        finally:
            built.machine.close()
        # the report names the blocks as the snapshot (and the user) numbers them
        report.offline.blocks = [built.snapshot_blocks[i] for i in report.offline.blocks]
        return report
