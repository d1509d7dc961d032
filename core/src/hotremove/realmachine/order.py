"""Which order to offline several memory blocks in: the one that moves the fewest pages.

The kernel offlines one block per ``offline_pages`` call, and a block's pages go where the
buddy allocator hands out frames (:mod:`hotremove.model.buddy`): the smallest free chunks
first, memory onlined in ascending order lowest first. A block offlined after another may so
receive the other's pages and move them again — removing two blocks full of page cache in
ascending order moves about 65,500 pages for 48,000 (Linux 6.1 and 6.12 under QEMU).

From a snapshot the plan computes, once per zone, the order in which the allocator would hand
out the free frames of the online blocks (a :class:`~hotremove.model.buddy.FreeArea` built
from the snapshot's free frames), and counts an order's cost: each block moves its own pages
(the plan's prediction) plus those that landed in it; its destinations are the next free
frames of that sequence outside the blocks already isolated or gone. A source in ZONE_MOVABLE
takes ZONE_MOVABLE's frames first, then the kernel zones'; a source in a kernel zone never
ZONE_MOVABLE's (``alloc_migration_target`` adds ``__GFP_HIGHMEM`` only for a ZONE_MOVABLE
source: ``gfp_zone`` of ``GFP_USER | __GFP_MOVABLE`` alone is ZONE_NORMAL).

Heuristics, stated: a huge page counts as its pages (its destination is an aligned chunk, not
the next frames); watermarks (the kernel leaves ZONE_MOVABLE's last few hundred pages and falls
back to the kernel zones) are not modelled; every order is tried for up to
:data:`MAX_EXHAUSTIVE` blocks, above that ascending, descending and a greedy order (next, the
block whose pages land least in blocks still to go).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hotremove.model.buddy import FreeArea

#: every permutation is tried up to this many blocks (720 orders)
MAX_EXHAUSTIVE = 6

#: zones from the lowest; a zonelist walks down from the allocation's highest zone
ZONE_INDEX = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3}


@dataclass
class OrderPlan:
    """The removal of ``blocks`` in several orders, and the cheapest."""

    blocks: list[int]
    #: pages moved: "ascending", "descending" and the best order's
    moved: dict[str, int]
    best: list[int]
    #: pages each call of the best order moves, in its order
    per_block: list[int]
    tried: int
    #: blocks asked for that cannot go (left out of the orders)
    left_out: list[int] = field(default_factory=list)
    #: pages no free frame was left for (the kernel: -ENOMEM, or the other zones)
    short: int = 0

    @property
    def saved(self) -> int:
        """Pages the best order moves fewer than ascending (``offline_and_remove_memory``)."""
        return self.moved["ascending"] - self.moved["best"]

    @property
    def name(self) -> str:
        for name in ("ascending", "descending"):
            if self.moved[name] == self.moved["best"] and self.best == self.ordered(name):
                return name
        return "listed"

    def ordered(self, name: str) -> list[int]:
        return sorted(self.blocks, reverse=name == "descending")

    def as_dict(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "moved": self.moved,
            "best": self.best,
            "best_order": self.name,
            "per_block": self.per_block,
            "saved_over_ascending": self.saved,
            "orders_tried": self.tried,
            "left_out": self.left_out,
            "short": self.short,
        }


class HandOut:
    """The allocator's hand-out order of the snapshot's free frames, per zone, as runs of
    (block, frames)."""

    def __init__(self, free: np.ndarray, zones: Sequence[str]) -> None:
        rows, ppb = free.shape
        self.zones = list(zones)
        self.runs: dict[str, tuple[list[int], list[int]]] = {}
        for zone in sorted(set(self.zones) & set(ZONE_INDEX)):
            mine = np.array([z == zone for z in self.zones])
            mask = (free & mine[:, None]).reshape(-1)
            area = FreeArea(rows * ppb, ppb)
            area.rebuild(mask)
            blocks = area.rmqueue_bulk(int(mask.sum())) // ppb
            if not len(blocks):
                continue
            cuts = np.flatnonzero(np.diff(blocks)) + 1
            starts = np.concatenate([[0], cuts])
            lengths = np.diff(np.concatenate([starts, [len(blocks)]]))
            self.runs[zone] = (blocks[starts].tolist(), lengths.tolist())

    def zonelist(self, block: int) -> list[str]:
        """The zones a destination for ``block``'s pages may come from, in order."""
        top = ZONE_INDEX.get(self.zones[block], -1)
        return [
            z
            for z in sorted(ZONE_INDEX, key=ZONE_INDEX.get, reverse=True)
            if ZONE_INDEX[z] <= top and z in self.runs
        ]

    def cost(self, order: Sequence[int], own: dict[int, int]) -> tuple[int, list[int], int]:
        """Pages moved by offlining ``order`` (block indices), the pages of each call, and
        the pages no frame was left for."""
        cursor = {zone: [0, 0] for zone in self.runs}  # run index, frames used of it
        gone: set[int] = set()
        arrived: dict[int, int] = {}
        per_call = []
        short = 0
        for block in order:
            gone.add(block)
            need = own.get(block, 0) + arrived.pop(block, 0)
            per_call.append(need)
            for zone in self.zonelist(block):
                if not need:
                    break
                blocks, lengths = self.runs[zone]
                at = cursor[zone]
                while need and at[0] < len(blocks):
                    dest, left = blocks[at[0]], lengths[at[0]] - at[1]
                    if dest in gone:
                        at[0], at[1] = at[0] + 1, 0
                        continue
                    take = min(left, need)
                    arrived[dest] = arrived.get(dest, 0) + take
                    need -= take
                    at[1] += take
                    if at[1] == lengths[at[0]]:
                        at[0], at[1] = at[0] + 1, 0
            short += need
        return sum(per_call), per_call, short


def recommend(
    free: np.ndarray, zones: Sequence[str], own: dict[int, int], left_out: Sequence[int] = ()
) -> OrderPlan | None:
    """The cheapest order to offline the blocks of ``own`` (block index → pages it moves),
    with ascending's and descending's costs; ``free``: the snapshot's free frames of online
    blocks (rows × frames), ``zones``: each block's zone. None for fewer than two blocks."""
    blocks = sorted(own)
    if len(blocks) < 2:
        return None
    hand = HandOut(free, zones)
    candidates: list[list[int]] = [blocks, blocks[::-1]]
    if len(blocks) <= MAX_EXHAUSTIVE:
        candidates += [list(p) for p in itertools.permutations(blocks)]
    else:
        candidates.append(greedy(hand, blocks, own))
    costs = [(hand.cost(c, own), i) for i, c in enumerate(candidates)]
    (best_total, per_call, short), index = min(costs, key=lambda x: (x[0][2], x[0][0], x[1]))
    moved = {
        "ascending": costs[0][0][0],
        "descending": costs[1][0][0],
        "best": best_total,
    }
    tried = len({tuple(c) for c in candidates})
    return OrderPlan(blocks, moved, candidates[index], per_call, tried, list(left_out), short)


def greedy(hand: HandOut, blocks: list[int], own: dict[int, int]) -> list[int]:
    """Next, the block whose offline now leaves the fewest pages in blocks still to go."""
    order: list[int] = []
    rest = list(blocks)
    while rest:

        def landed(b: int) -> tuple[int, int]:
            trial = [*order, b]
            _, per_call, _ = hand.cost([*trial, *[x for x in rest if x != b]], own)
            return sum(per_call[len(trial) :]), b

        pick = min(rest, key=landed)
        order.append(pick)
        rest.remove(pick)
    return order
