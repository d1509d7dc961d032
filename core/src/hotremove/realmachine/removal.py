"""Removing several memory blocks of a snapshot: which ones, and in which order.

``hotremove plan SNAPSHOT --remove 32-35`` (or, without ``--remove``, every ZONE_MOVABLE
block that can go: a hot-pluggable DIMM's) asks :mod:`hotremove.realmachine.order` for the
order that moves the fewest pages, and how many fewer than ascending — the order
``offline_and_remove_memory`` uses. Blocks that cannot go are left out and named.
"""

from __future__ import annotations

from collections.abc import Sequence

from hotremove.realmachine.order import OrderPlan, recommend
from hotremove.realmachine.plan import Plan
from hotremove.realmachine.snapshot import SnapshotError


def removal_set(p: Plan, remove: Sequence[int] | None = None) -> list[int]:
    """The blocks to remove: ``remove`` (snapshot block numbers, checked), or every
    ZONE_MOVABLE block that can go."""
    known = {b.index for b in p.blocks}
    if remove is None:
        return sorted(b.index for b in p.blocks if b.zone == "Movable" and b.offlinable)
    for block in remove:
        if block not in known:
            try:
                p.snapshot.row(block)  # says which blocks the snapshot has
            except SnapshotError as exc:
                raise SnapshotError(f"--remove: {exc}") from None
    return sorted(set(remove))


def plan_removal(p: Plan, remove: Sequence[int] | None = None) -> OrderPlan | None:
    """The order plan for :func:`removal_set`, in snapshot block numbers (None: fewer than
    two blocks can go)."""
    if p.free is None:
        return None
    wanted = removal_set(p, remove)
    rows = {info.index: r for r, info in enumerate(p.snapshot.blocks)}
    index = {r: i for i, r in rows.items()}
    own = {rows[i]: p.block(i).moved_pages for i in wanted if p.block(i).offlinable}
    left_out = [i for i in wanted if not p.block(i).offlinable]
    zones = [info.valid_zones for info in p.snapshot.blocks]
    result = recommend(p.free, zones, own, left_out)
    if result is None:
        return None
    result.blocks = [index[r] for r in result.blocks]
    result.best = [index[r] for r in result.best]
    return result
