"""The performance benchmark: offline a region full of ext2 page-cache pages, fast and right.

``hotremove bench`` builds a machine whose removal region is full of page-cache pages of an
ext2 1 KiB-block filesystem (four buffers a page, a share of pages with dirty buffers),
offlines the region with rebinding (``auto``) and with forced ``writeback``, verifies each run
(a fast wrong answer does not count), and reports pages/s of the offline itself, build time,
memory, and the simulated cost on every device preset.

Memory: "metadata" is the size of the simulated kernel's own state — mem_map (struct page
arrays), the buffer_head slab, page-cache trees and allocator lists — counted as array bytes
plus ``sys.getsizeof`` of every Python object involved (garbage-collector headers included).
The process's peak RSS is reported too; it also holds the simulated RAM, the golden model's
copy of the files and allocator slack.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hotremove.mm.memory_block import offline
from hotremove.model.cost import PRESETS
from hotremove.model.machine import Machine
from hotremove.model.memory import pfn_runs
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import PAGE_SIZE
from hotremove.plugins import PluginSet, load_plugins
from hotremove.scenario import Scenario, validate
from hotremove.sim.verify import verify
from hotremove.workload import build

FILE_SIZE = 4 << 20
MAX_BLOCK = 128 << 20
#: files per filesystem image: a region past this is spread over several images (the
#: schema's image limit), as a large machine's page cache spreads over several disks
FS_FILES_BYTES = 4 << 30


def bench_scenario(size: int, dirty: float, checks: bool, strategy: str) -> Scenario:
    """Region = ``size`` bytes of memory blocks filled with page cache (placement ``fill``),
    plus as much free memory again to migrate into. The files are on one image of the
    scenario's default type (1 KiB blocks) per 4 GiB of them (the first is the same image at
    every size: the image cache serves it)."""
    block = min(MAX_BLOCK, size)
    files = max(1, size // FILE_SIZE)
    file_size = min(FILE_SIZE, size)
    per_fs = max(1, FS_FILES_BYTES // file_size)
    counts = [min(per_fs, files - start) for start in range(0, files, per_fs)]
    return validate(
        {
            "memory": {"size": 2 * size + block, "block_size": block},
            "filesystem": [
                {
                    "name": "bench" if i == 0 else f"bench{i}",
                    "block_size": 1024,
                    "size": n * file_size + n * file_size // 8 + (32 << 20),
                    "files": n,
                    "file_size": file_size,
                }
                for i, n in enumerate(counts)
            ],
            "workload": {
                "seed": 1,
                "dirty": dirty,
                "dirty_buffers": "partial",
                "placement": "fill",
            },
            "remove": {
                "blocks": list(range(size // block)),
                "checks": checks,
                "strategy": strategy,
            },
            "device": {"preset": "ide-2004"},
        }
    )


def _peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    """Start the process's peak RSS (VmHWM) again from the current RSS, so each run's figure
    is its own: "5" into this process's own ``clear_refs`` (Linux 4.0+; it changes nothing
    but the process's counter; where it fails the figure is the process's peak so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _trim_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc ``malloc_trim``): without it
    a 16 GiB run's freed arrays stay resident and the next, smaller run's peak RSS starts
    from them (measured: a 1 GiB run after a 16 GiB one, 2.2 GB instead of 1.4 GB)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


#: What the kernel itself moves, for scale: 4 KiB pages migrated by ``move_pages(2)`` between
#: two NUMA nodes on an AMD Zen 3 EPYC, vanilla v7.1-rc1, single-threaded serial
#: ``folio_copy``: 3.31 ± 0.18 GB/s (Shivank Garg, "Re: [PATCH 0/7] Accelerate page migration
#: with batch copying and hardware offload", LKML, 8 May 2026,
#: https://lkml.iu.edu/hypermail/linux/kernel/2605.1/00684.html) — 3.31e9 / 4096 ≈ 0.81 M
#: pages/s (0.87 M if the GB there are GiB). Bench prints it beside the plain copy.
KERNEL_PAGES_PER_SECOND = 3.31e9 / PAGE_SIZE
KERNEL_REFERENCE = "move_pages(2), 4 KiB pages, AMD EPYC, v7.1-rc1 (LKML, 8 May 2026)"

#: the plain copy streams through a buffer this large (beyond any cache, few page faults)
COPY_CHUNK = 32 << 20


def plain_copy_seconds(frames: np.ndarray, pfns: np.ndarray) -> float:
    """Wall time of copying the bytes of frames ``pfns`` (consecutive runs) with
    ``numpy.copyto``, into one reused, already faulted buffer: the floor any migration of
    those pages could reach in this process — what the offline's time is a multiple of."""
    rows = COPY_CHUNK // frames.shape[1]
    dst = np.ones((rows, frames.shape[1]), np.uint8)  # faulted in before the clock starts
    starts, ends = pfn_runs(pfns)
    t0 = time.perf_counter()
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        for a in range(start, end, rows):
            b = min(end, a + rows)
            np.copyto(dst[: b - a], frames[a:b])
    return time.perf_counter() - t0


def metadata_bytes(machine: Machine) -> int:
    """Bytes of the model's kernel state beyond the frames (see module doc): mem_map, the
    buffer_head slab (its capacity), the allocator's lists, every page-cache tree with its
    keys and entries, and the dirty tags."""
    size = sys.getsizeof
    total = machine.memory.metadata_nbytes
    for mapping in machine.mappings:
        total += size(mapping) + size(mapping.i_pages) + mapping.i_pages.nbytes
        total += size(mapping.dirty_tags) + sum(size(index) for index in mapping.dirty_tags)
    return total


def recost(sizes: Counter[int], pages: int) -> dict[str, float]:
    """The same work on every preset: copies at its memcpy rate, each request at its cost."""
    return {
        name: pages * p.copy_seconds(4096)
        + sum(n * p.request_seconds(nbytes) for nbytes, n in sizes.items())
        for name, p in PRESETS.items()
    }


def bench_once(
    size: int, dirty: float, checks: bool, strategy: str, plugins: PluginSet, cache: Path | None
) -> dict[str, Any]:
    """Build, offline (timed alone), verify; return the figures."""
    scenario = bench_scenario(size, dirty, checks, strategy)
    _reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="hotremove-bench-") as tmp:
        t0 = time.perf_counter()
        built = build(scenario, plugins.hooks, Path(tmp), image_cache=cache)
        build_seconds = time.perf_counter() - t0
        machine = built.machine
        blocks = list(scenario.remove.blocks)
        # the machine's own copy of each cached image (copy-on-write, BlockDevice): timed
        # apart, so that neither the offline nor the build carries the cache's copy
        t0 = time.perf_counter()
        machine.materialise_images()
        image_copy_seconds = time.perf_counter() - t0
        frames_bytes = machine.memory.frames.nbytes
        metadata = metadata_bytes(machine)
        in_use = machine.memory.nr_pages - machine.memory.nr_free()
        nr_frames = machine.memory.nr_pages
        memory = machine.memory
        region = np.concatenate(
            [np.arange(memory.blocks[b].start_pfn, memory.blocks[b].end_pfn) for b in blocks]
        )
        in_region = region[memory.free_map[region] == 0]
        copy_seconds = plain_copy_seconds(memory.frames, in_region)
        sizes_before = Counter(machine.io.write_sizes)
        clock0 = machine.clock.cpu_seconds + machine.clock.io_seconds
        t0 = time.perf_counter()
        result = offline(
            machine,
            plugins.hooks,
            blocks,
            mode=MigrateMode.SYNC,
            policy=strategy,
            checks=checks,
        )
        offline_seconds = time.perf_counter() - t0
        simulated = machine.clock.cpu_seconds + machine.clock.io_seconds - clock0
        sizes = machine.io.write_sizes - sizes_before
        t0 = time.perf_counter()
        verdict = verify(built, plugins.hooks)
        verify_seconds = time.perf_counter() - t0
        machine.close()
    peak_rss = _peak_rss()
    del built, machine, memory
    gc.collect()  # the next run starts without this one's frames (peak RSS is per process)
    _trim_heap()
    return {
        "strategy": strategy,
        "checks": "on" if checks else "off",
        "pages": result.migrated,
        "offlined": result.offlined,
        "offline_seconds": offline_seconds,
        "pages_per_second": result.migrated / offline_seconds if offline_seconds else None,
        "plain_copy_seconds": copy_seconds,
        "offline_over_plain_copy": offline_seconds / copy_seconds if copy_seconds else None,
        "kernel_pages_per_second": KERNEL_PAGES_PER_SECOND,
        # the offline's time ÷ what the kernel would take for these pages at its rate
        "offline_over_kernel": (
            offline_seconds * KERNEL_PAGES_PER_SECOND / result.migrated if result.migrated else None
        ),
        "build_seconds": build_seconds,
        "build_over_offline": build_seconds / offline_seconds if offline_seconds else None,
        "image_copy_seconds": image_copy_seconds,
        "batched_pages": result.batched,
        "verify_seconds": verify_seconds,
        # build + image copy + offline + verification: what ``hotremove run`` pays end to end
        "whole_seconds": build_seconds + image_copy_seconds + offline_seconds + verify_seconds,
        "verified": verdict.ok and not result.check_failures,
        "rebound": result.rebound,
        "written_back": result.written_back,
        "writeback_ios": sum(sizes.values()),
        "simulated_seconds": simulated,
        "simulated_seconds_by_preset": recost(sizes, result.migrated),
        "simulated_ram_bytes": frames_bytes,
        "pages_in_use": in_use,
        "metadata_bytes_per_page": metadata / in_use if in_use else None,
        "metadata_bytes_per_frame": metadata / nr_frames,
        "peak_rss_bytes": peak_rss,
        "peak_rss_over_ram": peak_rss / frames_bytes,
        "peak_rss_over_in_use": peak_rss / (in_use * PAGE_SIZE) if in_use else None,
    }


def repeated(
    runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], object]
) -> list[dict[str, Any]]:
    """One row per ``key`` (a configuration) from its repeated runs: every numeric figure is
    the median, ``range`` gives its [min, max], ``samples`` the number of runs; a run that
    failed verification makes the row fail (``verified``/``offlined`` are all-of)."""
    groups: dict[object, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    rows = []
    for group in groups.values():
        row = dict(group[0])
        row["range"] = {}
        for field, value in group[0].items():
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int | float):
                values = [r[field] for r in group if r[field] is not None]
                row[field] = statistics.median(values)
                row["range"][field] = [min(values), max(values)]
            elif isinstance(value, dict) and all(isinstance(v, float) for v in value.values()):
                row[field] = {k: statistics.median(r[field][k] for r in group) for k in value}
        row["verified"] = all(r["verified"] for r in group)
        row["offlined"] = all(r["offlined"] for r in group)
        row["samples"] = len(group)
        rows.append(row)
    return rows


def run_bench(
    size: int,
    dirty: float = 0.3,
    checks: str = "off",
    strategies: tuple[str, ...] = ("auto", "writeback"),
    cache: Path | None = None,
    starting: Callable[[str], None] | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Every strategy at ``size`` (checks off, on, or both), ``repeat`` times each, with the
    writeback/auto ratios. ``runs`` are the medians (see :func:`repeated`), ``samples``
    every run. ``starting(description)`` is told before each run (a progress display)."""
    plugins = load_plugins()
    check_modes = {"off": [False], "on": [True], "both": [False, True]}[checks]
    samples = []
    for _ in range(repeat):
        for check in check_modes:
            for strategy in strategies:
                if starting is not None:
                    starting(f"{strategy}, checks {'on' if check else 'off'}")
                samples.append(bench_once(size, dirty, check, strategy, plugins, cache))
    runs = repeated(samples, lambda r: (r["strategy"], r["checks"]))
    out: dict[str, Any] = {"size_bytes": size, "dirty": dirty, "repeat": repeat, "runs": runs}
    out["samples"] = samples
    by = {(r["strategy"], r["checks"]): r for r in runs}
    auto, wb = (
        by.get(("auto", "off")) or by.get(("auto", "on")),
        by.get(("writeback", "off")) or by.get(("writeback", "on")),
    )
    if auto and wb:
        out["writeback_over_auto"] = {
            name: wb["simulated_seconds_by_preset"][name]
            / auto["simulated_seconds_by_preset"][name]
            for name in PRESETS
        }
    on, off = by.get(("auto", "on")), by.get(("auto", "off"))
    if on and off:
        out["checks_slowdown"] = on["offline_seconds"] / off["offline_seconds"]
    if wb:
        out["fallback_pages_per_second"] = wb["pages_per_second"]
    out["ok"] = all(r["verified"] and r["offlined"] for r in runs)
    return out


def run_scaling(
    sizes: list[int],
    dirty: float,
    cache: Path | None,
    starting: Callable[[str], None] | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """``auto`` with checks off at several sizes, ``repeat`` times each (medians): does time
    per page stay flat?"""
    plugins = load_plugins()
    samples = []
    for _ in range(repeat):
        for size in sizes:
            if starting is not None:
                starting(f"scaling {size >> 20} MiB")
            row = bench_once(size, dirty, False, "auto", plugins, cache)
            row["size_bytes"] = size
            row["microseconds_per_page"] = row["offline_seconds"] / row["pages"] * 1e6
            samples.append(row)
    rows = repeated(samples, lambda r: r["size_bytes"])
    per_page = [r["microseconds_per_page"] for r in rows]
    return {
        "scaling": rows,
        "samples": samples,
        "flat": max(per_page) <= 1.5 * min(per_page),
        "ok": all(r["verified"] and r["offlined"] for r in rows),
    }
