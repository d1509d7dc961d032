"""What one offline did: the per-a_ops table, the page classes, the failures and their reason.

The engine fills these in as it goes; :mod:`hotremove.sim.report` turns them into the user's
report. The reason line is worded the way ``offline_pages`` logs its failures ("memory
offlining … failed due to …"), with the kernel's error names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hotremove.model.buffer_head import BH_JBD, BH_Lock, buffer_ring
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import Page, PG_locked, PG_private, PG_writeback
from hotremove.sim.checks import CheckFailure

ANON = "anon"  # the report's a_ops label for anonymous memory
SWAP = "swap_aops"  # anonymous pages in the swap cache


@dataclass
class AopsStats:
    """One row of the per-a_ops table."""

    plugin: str
    strategy: str
    pages: int = 0
    migrated: int = 0
    rebound: int = 0
    written_back: int = 0
    write_requests: int = 0
    failed: int = 0


@dataclass
class BlockResult:
    """One memory block's ``offline_pages`` call (one write of ``offline`` to its
    ``memoryN/state``): what it moved, whether the block went, and why not."""

    block: int
    offlined: bool = False
    pages_in_region: int = 0
    migrated: int = 0
    rebound: int = 0
    written_back: int = 0
    #: pages that never moved (the call's failures)
    failed: int = 0
    failed_attempts: int = 0
    passes: int = 0
    rounds: int = 0
    #: of ``migrated``, pages the batched path moved (:mod:`hotremove.mm.batch`)
    batched: int = 0
    reason: str = ""
    #: simulated CPU and I/O time of the call (the report's ``simulated_seconds`` is the sum)
    simulated_seconds: float = 0.0
    #: simulated clock from the write to its return, waits and the timeout included (what
    #: ``timeout`` around the write measures)
    elapsed_seconds: float = 0.0
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class OfflineResult:
    """What the ``offline_pages`` calls did (one per block, in ``blocks`` order, each in
    ``per_block``); the counters are their sums. :mod:`hotremove.sim.report` turns it into
    the user's report."""

    #: the blocks in the order they were offlined (``remove.order``)
    blocks: list[int]
    mode: MigrateMode
    policy: str
    pages_in_region: int = 0
    isolated_free: int = 0
    migrated: int = 0
    rebound: int = 0
    written_back: int = 0
    passes: int = 0
    rounds: int = 0
    offlined: bool = False
    failed: list[dict[str, object]] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    per_aops: dict[str, AopsStats] = field(default_factory=dict)
    check_failures: list[CheckFailure] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: page class → {"pages", "migrated", "failed"} (see :mod:`hotremove.sim.classify`)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: why the offline did not complete ("" when it did), as offline_pages would log it
    reason: str = ""
    #: pages moved by the batched path (:mod:`hotremove.mm.batch`), part of ``migrated``
    batched: int = 0
    #: the simulated kernel (:mod:`hotremove.kernels`)
    kernel: str = ""
    #: folios a ``migrate_pages`` call failed to move, summed over every call
    #: (``pgmigrate_fail``: a spinning offline fails the same pages again and again)
    failed_attempts: int = 0
    #: rounds skipped over while nothing could change before the next kernel timer
    spun_rounds: int = 0
    #: huge pages split because no 2 MiB destination was free (``thp_split_page``)
    thp_split: int = 0
    #: ``remove.order``: ascending, descending or listed
    order: str = "ascending"
    #: one entry per ``offline_pages`` call, in call order
    per_block: list[BlockResult] = field(default_factory=list)

    def add_failure(self, pfn: int, reason: str, rc: Errno) -> None:
        self.failed.append({"pfn": pfn, "reason": reason, "errno": rc.label})

    def totals(self) -> None:
        """``rebound`` and ``written_back`` are the per-a_ops rows' sums."""
        self.rebound = sum(s.rebound for s in self.per_aops.values())
        self.written_back = sum(s.written_back for s in self.per_aops.values())


def busy_reason(page: Page) -> str:
    """Why a page kept failing with -EAGAIN, read from its state the way a kernel developer
    would look at ``dump_page``: a journal_head (jbd2 holds the buffer), another reference
    on a buffer, a locked buffer or page, writeback, or a reference nobody accounts for."""
    if page.flags & PG_writeback:
        return "busy: under writeback"
    if page.flags & PG_locked:
        return "busy: page locked"
    if page.flags & PG_private:
        ring = buffer_ring(page.private)
        if any(bh.b_state & BH_JBD for bh in ring):
            return "busy: buffer held by jbd2 (journal_head)"
        if any(bh.b_count for bh in ring):
            return "busy: buffer referenced"
        if any(bh.b_state & BH_Lock for bh in ring):
            return "busy: buffer locked"
    expected = (page.mapping is not None) + bool(page.flags & PG_private) + page._mapcount
    if page._refcount > expected:
        return "busy: extra reference"
    return "busy"


def failure_reason(
    failed: dict[int, Errno], reasons: Counter[str], rounds: int, interrupted: str = ""
) -> str:
    """The one-line reason of a failed offline: the error that decided it, then how many pages
    failed for which reason."""
    summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    errors = set(failed.values())
    if Errno.EINTR in errors:
        how = interrupted or "interrupted"
        return f"signal backoff (-EINTR): {how}, rolled back: {summary}"
    if Errno.ENOMEM in errors:
        return f"no memory to migrate to (-ENOMEM): {summary}"
    if Errno.EIO in errors:
        return f"I/O error while writing back (-EIO): {summary}"
    if Errno.EPLUGIN in errors:
        return f"a migration strategy raised: {summary}"
    return f"gave up after {rounds} rounds of migrate_pages: {summary}"


__all__ = [
    "ANON",
    "SWAP",
    "AopsStats",
    "BlockResult",
    "OfflineResult",
    "busy_reason",
    "failure_reason",
]
