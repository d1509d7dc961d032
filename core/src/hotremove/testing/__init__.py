"""Test helpers for hotremove and its plugins (the pytest fixtures live in
:mod:`hotremove.testing.fixtures`, registered through the ``pytest11`` entry point).

Everything here builds *real* machines over *real* images; nothing is mocked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hotremove.engine import OfflineResult
from hotremove.model.address_space import AddressSpace
from hotremove.model.buffer_head import BH_Lock, page_buffers
from hotremove.model.page import PG_private
from hotremove.scenario import Scenario, validate
from hotremove.workload import Built


def small_scenario(
    *filesystems: dict[str, Any],
    memory: str = "32MiB",
    block_size: str = "8MiB",
    blocks: tuple[int, ...] = (1,),
    mode: str = "sync",
    strategy: str = "auto",
    **workload: Any,
) -> Scenario:
    """A scenario small enough for a unit test (a few hundred pages), spread placement so the
    removed block holds pages of every filesystem."""
    fs_list = [
        {"name": f"fs{i}", "size": "8MiB", "files": 16, "file_size": "32KiB", **fs}
        for i, fs in enumerate(filesystems or ({"type": "ext2"},))
    ]
    data = {
        "memory": {"size": memory, "block_size": block_size},
        "filesystem": fs_list,
        "workload": {"seed": 7, "dirty": 0.5, **workload},
        "remove": {"blocks": list(blocks), "mode": mode, "strategy": strategy},
    }
    return validate(data)


@dataclass(frozen=True)
class PageSnapshot:
    """A cached page before the offline: where it was and what its buffers said."""

    mapping: AddressSpace
    index: int
    pfn: int
    flags: int
    buffers: tuple[tuple[object, int, int], ...]  # (bh, b_blocknr, b_state without BH_Lock)


def snapshot_region(built: Built, blocks: list[int]) -> list[PageSnapshot]:
    """Every page-cache page in ``blocks``, with its buffers, before anything moves."""
    memory = built.machine.memory
    shots = []
    for mapping in built.machine.mappings:
        for index, page in mapping.i_pages.items():
            if memory.block_of(page.pfn) in blocks:
                bhs = page_buffers(page) if page.flags & PG_private else []
                shots.append(
                    PageSnapshot(
                        mapping,
                        index,
                        page.pfn,
                        page.flags,
                        tuple((bh, bh.b_blocknr, bh.b_state & ~BH_Lock) for bh in bhs),
                    )
                )
    return shots


def rebinding_problems(built: Built, shots: list[PageSnapshot]) -> list[str]:
    """What went wrong for pages that should have moved with their buffers: not moved, a
    buffer that does not point at the new page, a changed block number or state bit."""
    problems = []
    for shot in shots:
        page = shot.mapping.i_pages.get(shot.index)
        if page is None or page.pfn == shot.pfn:
            problems.append(f"{shot.mapping}:{shot.index} did not move")
            continue
        now = page_buffers(page) if page.flags & PG_private else []
        if [bh for bh, _, _ in shot.buffers] != now:
            problems.append(f"{shot.mapping}:{shot.index} buffers were replaced")
            continue
        for bh, blocknr, state in shot.buffers:
            if bh.b_page is not page:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} does not point at the new page")
            if bh.b_blocknr != blocknr:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} block changed from {blocknr}")
            if bh.b_state != state:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} state changed from {state:#x}")
    return problems


def assert_clean_result(result: OfflineResult) -> None:
    """The offline completed and every per-step and whole-machine check held."""
    assert result.offlined, f"offline failed: {result.failed[:5]}"
    assert not result.check_failures, result.check_failures[:5]


__all__ = [
    "PageSnapshot",
    "assert_clean_result",
    "rebinding_problems",
    "small_scenario",
    "snapshot_region",
]
