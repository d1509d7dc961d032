"""Shrinking: a disagreeing case made smaller while it still disagrees.

Each round proposes every one-step reduction of the current case (drop a filesystem, halve
its files or their size, lower the dirty share, drop a removed block, periodic writeback off,
no wait before the offline, no mount options), judges them all at once — one guest boot for
the lot when the judge is the real kernel — and keeps the first that still disagrees. It
stops when none does, or after ``rounds`` rounds. The judge is any function from scenario
tables to "still disagrees?", so the loop is tested on a disagreement between two simulated
kernels without a guest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from hotremove.realkernel.fuzz.generate import accepted

#: tables → does each still disagree (in order)
Judge = Callable[[Sequence[dict[str, Any]]], list[bool]]


def _kib(text: str) -> int:
    return int(text.removesuffix("KiB"))


def reductions(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every one-step smaller variant of ``data``, each with a few words saying what went."""
    out: list[tuple[str, dict[str, Any]]] = []

    def variant(what: str, change: Callable[[dict[str, Any]], None]) -> None:
        new = copy.deepcopy(data)
        change(new)
        if new != data:
            out.append((what, new))

    filesystems = data["filesystem"]
    for i, fs in enumerate(filesystems):
        if len(filesystems) > 1:
            variant(f"drop {fs['name']}", lambda d, i=i: d["filesystem"].pop(i))
    for i, fs in enumerate(filesystems):
        if fs["files"] > 1:
            variant(
                f"{fs['name']}: {fs['files'] // 2} files",
                lambda d, i=i: d["filesystem"][i].update(files=d["filesystem"][i]["files"] // 2),
            )
        if _kib(fs["file_size"]) > 4:
            variant(
                f"{fs['name']}: files of {_kib(fs['file_size']) // 2}KiB",
                lambda d, i=i: d["filesystem"][i].update(
                    file_size=f"{_kib(d['filesystem'][i]['file_size']) // 2}KiB"
                ),
            )
        if fs["options"]:
            variant(
                f"{fs['name']}: no options", lambda d, i=i: d["filesystem"][i].update(options=[])
            )
    blocks = data["remove"]["blocks"]
    for b in blocks if len(blocks) > 1 else []:
        variant(f"keep block {b}", lambda d, b=b: d["remove"].update(blocks=[b]))
    dirty = data["workload"]["dirty"]
    if dirty > 0:
        variant("dirty 0", lambda d: d["workload"].update(dirty=0.0))
        if dirty >= 0.02:
            variant(
                f"dirty {round(dirty / 2, 2)}",
                lambda d: d["workload"].update(dirty=round(dirty / 2, 2)),
            )
    if data["kernel"].get("dirty_writeback_centisecs", 0):
        variant(
            "writeback off",
            lambda d: d["kernel"].update(
                dirty_writeback_centisecs=0, dirty_expire_centisecs=360_000
            ),
        )
    if data["remove"].get("start", 0):
        variant("no wait before the offline", lambda d: d["remove"].update(start=0))
    return out


def shrink(
    data: dict[str, Any],
    still_disagrees: Judge,
    *,
    versions: Sequence[str],
    rounds: int = 4,
    per_round: int = 8,
) -> tuple[dict[str, Any], list[str]]:
    """The smallest variant of ``data`` found that still disagrees, and the steps taken."""
    current, steps = data, []
    for _ in range(rounds):
        candidates = [(w, d) for w, d in reductions(current) if accepted(d, versions) is not None]
        candidates = candidates[:per_round]  # one guest boot's worth
        if not candidates:
            break
        verdicts = still_disagrees([d for _, d in candidates])
        chosen = next((c for c, bad in zip(candidates, verdicts, strict=True) if bad), None)
        if chosen is None:
            break
        steps.append(chosen[0])
        current = chosen[1]
    return current, steps
