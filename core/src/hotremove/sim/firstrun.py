"""``bench --first-run``: a whole run of a scenario nobody has run before, beside a second run
of it once its images are cached.

A user's first ``hotremove run`` of a new scenario pays for what later runs take from the
image cache: the files generated, the image made by the type's own tools (its mkfs), its
block maps read. The figure is the whole run (build, offline, verification) in this process,
uncached then cached, with each phase — into an image cache of its own, emptied first, so
"uncached" means it whatever the user's cache holds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotremove.plugins import PluginSet, load_plugins
from hotremove.scenario import Scenario, validate
from hotremove.sim.runner import run_scenario

#: the issue's scenario: a 1 GiB region of a 3 GiB machine full of page cache — 4,000 files
#: of 256 KiB on a 1 KiB-block ext2 image, 30 % of the pages with dirty buffers — offlined
#: with rebinding and verified (examples/perf/run-1GiB.toml)
FIRST_RUN = {
    "memory": {"size": "3GiB", "block_size": "128MiB"},
    "filesystem": [
        {
            "name": "data",
            "type": "ext2",
            "block_size": 1024,
            "size": "1200MiB",
            "files": 4000,
            "file_size": "256KiB",
        }
    ],
    "workload": {"seed": 1, "dirty": 0.3, "dirty_buffers": "partial", "placement": "fill"},
    "remove": {"blocks": list(range(8))},
}


def first_run_scenario() -> Scenario:
    return validate(FIRST_RUN)


def whole_run(scenario: Scenario, plugins: PluginSet, cache: Path) -> dict[str, Any]:
    """One ``hotremove run`` of ``scenario`` in this process: its phases and verdict."""
    t0 = time.perf_counter()
    report = run_scenario(scenario, plugins=plugins, image_cache=cache)
    whole = time.perf_counter() - t0
    verified = report.verify is not None and report.verify.ok
    return {
        "build_seconds": report.build_seconds,
        "offline_seconds": report.offline.wall_seconds,
        "verify_seconds": report.verify_seconds,
        "whole_seconds": whole,
        "offlined": report.offline.offlined,
        "verified": verified,
    }


def run_first(
    repeat: int = 1,
    starting: Callable[[str], None] | None = None,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    """``repeat`` × (an uncached whole run, then the same run cached); medians and ranges."""
    plugins = load_plugins()
    scenario = scenario or first_run_scenario()
    samples: dict[str, list[dict[str, Any]]] = {"uncached": [], "cached": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="hotremove-first-run-") as tmp:
            for kind in ("uncached", "cached"):
                if starting is not None:
                    starting(f"first run, {kind}")
                samples[kind].append(whole_run(scenario, plugins, Path(tmp)))
    runs = {kind: _median(s) for kind, s in samples.items()}
    ok = all(r["verified"] and r["offlined"] for s in samples.values() for r in s)
    return {"repeat": repeat, "runs": runs, "samples": samples, "ok": ok}


def _median(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in samples[0].items():
        if isinstance(value, float):
            values = [s[key] for s in samples]
            out[key] = statistics.median(values)
            out[f"{key}_range"] = [min(values), max(values)]
        else:
            out[key] = all(s[key] for s in samples)
    return out
