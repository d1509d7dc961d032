"""Sweeps: a grid of scenarios, run on a process pool or a Dask cluster, one result row per run.

A **grid file** (TOML) names a base scenario and the axes to vary::

    name = "seed-question"                  # optional (default: the file's stem)
    base = "../scenarios/ext2.toml"         # a scenario file (relative to the grid), or a table:
    # [base.memory] ... [[base.filesystem]] ...

    [axes]                                  # any scenario key; the product of all axes is run
    "workload.dirty" = [0, 0.1, 0.3, 0.6, 1.0]
    "remove.strategy" = ["auto", "writeback"]
    "filesystem[0].block_size" = [1024, 4096]   # one filesystem; filesystem[*] = all of them
    "workload.seed" = {range = [1, 5]}          # 1, 2, 3, 4, 5 (both ends; optional step)

    [plot]                                  # optional, see PlotSpec
    x = "workload.dirty"

Every combination is validated up front (an impossible one is a one-line error naming the
axis), and gets a **run id**: a hash of its validated scenario's non-default values. Equal
scenarios have equal ids whatever executor runs them; a changed base gives new ids, so
``--resume`` never mistakes a stale row for a finished run; a key the schema gains later (with a
default) changes no id, so results survive upgrades.

**Runs** are pure functions ``run_one(run_id, scenario dict) → row`` executed on any pool with
``submit``/``as_completed``: :class:`LocalPool` (``concurrent.futures.ProcessPoolExecutor``)
or :class:`DaskPool` (``distributed.Client``; Dask does the distribution, the retries of lost
workers and its dashboard). Both go through :func:`execute`, the one code path.

**Results** are CSV, one line per finished run, appended with a single ``write(2)`` on an
``O_APPEND`` descriptor as each run finishes, so an interrupted sweep keeps every finished row
(a torn last line is cut off on resume). Every row carries the format (:data:`FORMAT`) and a
checksum of its line, verified whenever the file is read back: a damaged file is refused.
A run that fails — offline incomplete, a check or verification failed (``status = failed``)
or an exception inside the run (``status = error``) — is a row too; only a run whose worker
was lost (``BrokenProcessPool``, a cancelled future) has no row, is reported, and runs again
with ``--resume``.
"""

from __future__ import annotations

from hotremove.sweep.columns import FORMAT, STATUSES
from hotremove.sweep.driver import SweepResult, existing_rows, summarize, sweep
from hotremove.sweep.grid import Grid, GridError, RunSpec, check_strategies, load_grid
from hotremove.sweep.grid import _show as _show  # the CLI formats axis values with it
from hotremove.sweep.plot import plot
from hotremove.sweep.results import ResultsError, ResultsFile
from hotremove.sweep.rows import failure_reason, header, identity, run_one

__all__ = [
    "FORMAT",
    "STATUSES",
    "Grid",
    "GridError",
    "ResultsError",
    "ResultsFile",
    "RunSpec",
    "SweepResult",
    "check_strategies",
    "existing_rows",
    "failure_reason",
    "header",
    "identity",
    "load_grid",
    "plot",
    "run_one",
    "summarize",
    "sweep",
]
