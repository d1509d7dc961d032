"""Will this run fit in this machine's memory? Estimated before anything is built.

The simulated RAM is real: every frame is 4 KiB of this machine's memory (populated up
front), the golden model keeps every file's final bytes, and the kernel objects cost about a
hundred bytes per frame and per buffer_head. A scenario that cannot fit would be killed by the
OOM killer half-way through, so the command line refuses it with one line instead (``--force``
tries anyway). ``HOTREMOVE_MEMORY_LIMIT`` (a size: ``"8GiB"``) caps what hotremove may use below
what the machine has available.
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
    """The run's peak memory: the frames, every file's bytes (the golden model and the
    builder's copy while it fills the page cache), the kernel objects, a baseline."""
    frames = scenario.memory.size
    nr_frames = frames // PAGE_SIZE
    files = sum(fs.files * fs.file_size for fs in scenario.filesystem)
    buffers = sum(
        -(-fs.file_size // PAGE_SIZE) * fs.files * (PAGE_SIZE // fs.block_size)
        for fs in scenario.filesystem
    )
    return frames + 2 * files + nr_frames * PER_FRAME + buffers * PER_BUFFER + BASELINE


def available_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo, capped by ``HOTREMOVE_MEMORY_LIMIT``."""
    available = _mem_available()
    limit = os.environ.get("HOTREMOVE_MEMORY_LIMIT")
    if limit:
        try:
            capped = parse_size(limit)
        except ValueError as exc:
            raise ScenarioError(f"HOTREMOVE_MEMORY_LIMIT: {exc}") from None
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
