"""Will this run fit in this machine's memory? Estimated before anything is built.

The simulated RAM is real where it is used: a frame costs 4 KiB of this machine's memory once
the workload fills it, and gives it back when it dies (free in an isolated or offline block);
migration holds at most a batch of old and new frames at once. The golden model keeps where
the workload wrote (files and written bytes are made again from their generators), and the
kernel objects cost about a hundred bytes per frame and per buffer_head. A scenario that
cannot fit would be killed by the OOM killer half-way through, so the command line refuses it
with one line instead (``--force`` tries anyway). ``HOTREMOVE_MEMORY_LIMIT`` (a size:
``"8GiB"``) caps what hotremove may use below what the machine has available.
"""

from __future__ import annotations

import os
from pathlib import Path

from hotremove.errors import ScenarioError
from hotremove.model.page import PAGE_SIZE
from hotremove.scenario import Scenario, parse_size

#: what the interpreter, numpy, the plugins and the per-run structures need besides the arrays
BASELINE = 400 << 20
#: struct page fields, free lists, page-cache trees and the like, per frame (measured ≈ 106 B)
PER_FRAME = 128
#: a buffer_head in the slab (≈ 30 B) and its share of the builder's work arrays
PER_BUFFER = 64


def estimate_peak_bytes(scenario: Scenario) -> int:
    """The run's peak memory: the frames in use (page cache, anonymous memory, unmovable
    pages) and one memory block's worth of frames in flight, the written bytes the golden
    model keeps, one file being made, the kernel objects, a baseline."""
    wl = scenario.workload
    nr_frames = scenario.memory.size // PAGE_SIZE
    files = sum(fs.files * fs.file_size for fs in scenario.filesystem)
    anon = wl.anon + wl.thp * (2 << 20) + wl.unmovable * PAGE_SIZE
    in_use = min(scenario.memory.size, int(files * wl.cached) + anon)
    in_flight = min(scenario.memory.size, scenario.memory.block_size)
    largest_file = max((fs.file_size for fs in scenario.filesystem), default=0)
    buffers = sum(
        -(-fs.file_size // PAGE_SIZE) * fs.files * (PAGE_SIZE // fs.block_size)
        for fs in scenario.filesystem
    )
    # the golden model keeps where the workload wrote (two int64 per extent: at most one
    # extent per dirty buffer), not the bytes: it draws them again from the saved state
    written = buffers * wl.cached * wl.dirty * 16
    return (
        in_use
        + in_flight
        + int(written)
        + largest_file
        + nr_frames * PER_FRAME
        + buffers * PER_BUFFER
        + BASELINE
    )


def available_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo, capped by ``HOTREMOVE_MEMORY_LIMIT``."""
    available = _mem_available()
    limit = os.environ.get("HOTREMOVE_MEMORY_LIMIT")
    if limit:
        try:
            capped = parse_size(limit)
        except ValueError as exc:
            raise ScenarioError(f"HOTREMOVE_MEMORY_LIMIT: {exc}") from None
        if capped <= 0:  # 0 would read as "unknown: no guard", the opposite of what it says
            raise ScenarioError("HOTREMOVE_MEMORY_LIMIT: must be a positive size (e.g. 8GiB)")
        available = min(available, capped) if available else capped
    return available


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0  # unknown: no guard


def check_memory(scenario: Scenario, *, force: bool = False) -> None:
    """Refuse (one line) a run that would not fit, unless ``force``."""
    if force:
        return
    need, have = estimate_peak_bytes(scenario), available_bytes()
    if have and need > have:
        raise ScenarioError(
            f"memory.size: this run needs about {_gib(need)} of RAM, {_gib(have)} is available "
            "(a smaller memory.size or fewer files fit; --force tries anyway)"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


#: plan's memory per page frame of a snapshot: flags and counts, the KPF bit masks, the
#: classes, the layout and np.select's temporaries (measured ≈ 130 B with every bit set)
PLAN_BYTES_PER_PAGE = 160


def check_plan_memory(pages: int) -> None:
    """Refuse (one line), before its arrays are read, a snapshot whose ``pages`` frames this
    machine cannot classify and plan (``--force`` skips this check)."""
    need, have = pages * PLAN_BYTES_PER_PAGE + BASELINE, available_bytes()
    if have and need > have:
        raise ScenarioError(
            f"snapshot: planning its {pages:,} page frames needs about {_gib(need)} of RAM, "
            f"{_gib(have)} is available (--force tries anyway)"
        )
