"""One unit of fuzz work, the same on a local thread and on a Dask worker: a batch of
scenarios (as TOML tables) run in one guest of one kernel, each judged. Takes and returns
plain data only, so a Dask worker needs nothing but an installed hotremove and the kernel
(fetched into its own cache on first use)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hotremove.scenario import validate


def run_task(
    items: Sequence[tuple[str, dict[str, Any]]],
    version: str,
    *,
    workdir: str | None = None,
    lock: str | None = None,
    accel: str | None = None,
    keep: bool = False,
) -> list[dict[str, Any]]:
    """Each (name, tables) of ``items`` run in one guest of Linux ``version`` and judged:
    one dict per item — status, rows, error, real, timeline, guest_seconds."""
    from hotremove.realkernel.fetch import fetch_kernel
    from hotremove.realkernel.fuzz.batch import run_batch
    from hotremove.realkernel.fuzz.judge import judge

    scenarios = [(name, validate(data)) for name, data in items]
    root = Path(workdir) if workdir else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{version}-", dir=root))
    try:
        bundle = fetch_kernel(version)
        outcomes = run_batch(
            scenarios,
            version,
            workdir=work,
            bundle=bundle,
            accel=accel,
            lock=Path(lock) if lock else None,
        )
        results = []
        for (_name, scn), outcome in zip(scenarios, outcomes, strict=True):
            verdict = judge(scn, version, outcome.report, outcome.error)
            results.append(
                {
                    "status": verdict.status,
                    "rows": verdict.rows,
                    "failing": verdict.failing,
                    "error": verdict.error,
                    "real": verdict.real,
                    "timeline": verdict.timeline,
                    "guest_seconds": outcome.report.wall_seconds if outcome.report else 0.0,
                }
            )
    except Exception as exc:  # the kernel could not be fetched, the disk is full: every item
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        results = [
            {
                "status": "error",
                "rows": [],
                "failing": [],
                "error": message,
                "real": {},
                "timeline": {},
                "guest_seconds": 0.0,
            }
            for _ in items
        ]
    if not keep and all(r["status"] != "error" for r in results):
        shutil.rmtree(work, ignore_errors=True)
    return results
