"""``hotremove sweep GRID.toml``: run a grid of scenarios on a process pool or a Dask cluster.

The command (:data:`sweep_command`) is registered in the ``hotremove`` group; it also runs on
its own (:func:`main`), through the same error path (:mod:`hotremove.cli.base`), so it behaves
the same either way:

* stdout: the summary table (or the ``--list`` table); stderr: logs, progress, errors;
* exit status 0 = every run of the grid has a row and all of them are ok, 1 = some run failed,
  errored or was lost, 2 = bad input (one line ``hotremove: error: ...``), 130 = interrupted
  (the rows written so far stay; ``--resume`` continues).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from hotremove import sweep as sw
from hotremove.cli.base import CONTEXT_SETTINGS, PROG, Command
from hotremove.cli.display import progress_bar
from hotremove.cli.output import print_table, print_text, stdout_console, wide_option
from hotremove.cli.params import Digits
from hotremove.cli.settings import begin, shared_options
from hotremove.errors import HotremoveError
from hotremove.fileio import check_png
from hotremove.signals import exit_status, install_handlers, stopped_line
from hotremove.units import format_seconds


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _run_table(grid: sw.Grid, rows: dict[str, dict[str, Any]], output: Path) -> Table:
    table = Table(title=f"hotremove sweep {grid.name}: {len(grid.runs)} runs ({grid.source})")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("run id", no_wrap=True)
    table.add_column(f"row in {output.name}", no_wrap=True)
    for key in grid.axis_keys:
        table.add_column(key, justify="right", min_width=len(key), no_wrap=True)
    for run in grid.runs:
        row = rows.get(run.run_id)
        status = Text("—", style="dim") if row is None else _status_text(row["status"])
        table.add_row(
            str(run.index), run.run_id, status, *(sw._show(run.values[k]) for k in grid.axis_keys)
        )
    return table


def _status_text(status: str) -> Text:
    return Text(status, style="green" if status == "ok" else "bold red")


def _summary_table(result: sw.SweepResult) -> Table:
    grid = result.grid
    groups = sw.summarize(grid, result.rows)
    shown = [k for k in grid.axis_keys if k not in grid.aggregated]
    agg = f" (mean over {', '.join(grid.aggregated)})" if grid.aggregated else ""
    table = Table(title=f"hotremove sweep {grid.name}{agg}")
    for key in shown:
        table.add_column(key, justify="right", min_width=len(key), no_wrap=True)
    for column in ("ok", "migrated", "rebound", "written back", "write I/Os"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("simulated time", justify="right", no_wrap=True)
    if grid.aggregated:
        table.add_column("spread", justify="right", no_wrap=True)
    for group in groups:
        ok = group.count("ok")
        cells = [
            *(sw._show(group.values[k]) for k in shown),
            Text(f"{ok}/{group.expected}", style="green" if ok == group.expected else "bold red"),
            _number(group.mean("migrated")),
            _number(group.mean("rebound")),
            _number(group.mean("written_back")),
            _number(group.mean("writeback_ios")),
            format_seconds(group.mean("simulated_seconds"), grouping=True),
        ]
        if grid.aggregated:
            cells.append(_spread(group.span("simulated_seconds"), group.mean("simulated_seconds")))
        table.add_row(*cells)
    return table


def _spread(span: tuple[float, float] | None, mean: float | None) -> str:
    """The largest distance from the mean to the min or max, as a percentage of the mean."""
    if span is None or not mean:
        return "—"
    return f"±{max(mean - span[0], span[1] - mean) / mean:.1%}"


def _footer(result: sw.SweepResult) -> list[Text]:
    rows = result.rows.values()
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in sw.STATUSES}
    total = len(result.grid.runs)
    line = Text(
        f"{len(result.rows)} of {total} runs have rows: {counts['ok']} ok, "
        f"{counts['failed']} failed, {counts['error']} errors "
        f"({result.new} new, {result.skipped} already in {result.output})"
    )
    lines = [line]
    if result.new:
        lines.append(Text(f"{result.wall_seconds:.1f} s wall on {result.executor}", style="dim"))
    bad = [r for r in result.grid.runs if result.rows.get(r.run_id, {}).get("status", "ok") != "ok"]
    for run in bad[:10]:
        row = result.rows[run.run_id]
        lines.append(
            Text(f"  {row['status']} run {run.index} ({run.label()}): {row['reason']}", style="red")
        )
    if len(bad) > 10:
        lines.append(Text(f"  … and {len(bad) - 10} more (see {result.output})", style="red"))
    return lines


@click.command("sweep", cls=Command, context_settings=CONTEXT_SETTINGS)
@click.argument("grid_file", metavar="GRID.toml", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results CSV, one row per run (default: ./NAME.csv, NAME = the grid's name).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: a process pool on this machine. dask: a Dask distributed cluster.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler address (tcp://host:8786); without it --executor dask starts a "
    "LocalCluster.",
)
@click.option(
    "-j",
    "--workers",
    type=Digits(),
    help="Worker processes (default: the machine's CPUs; not with --scheduler).",
)
@click.option("--resume", is_flag=True, help="Skip the runs that already have a row in the output.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option(
    "--list", "list_runs", is_flag=True, help="Show the runs (and which have rows); run nothing."
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Draw the grid's figure (default: simulated time, log scale, against the dirty share; "
    "one line per strategy and device).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Run even when the grid's largest run, once per worker, exceeds the memory this "
    "machine has available; replace the --plot file if it exists.",
)
@wide_option
@shared_options
@click.pass_context
def sweep_command(
    ctx: click.Context,
    grid_file: Path,
    output: Path | None,
    executor: str,
    scheduler: str | None,
    workers: int | None,
    resume: bool,
    overwrite: bool,
    list_runs: bool,
    plot_file: Path | None,
    force: bool,
    wide: bool,
) -> int:
    """Run a grid of scenarios: every combination of the grid's axes, one row per run.

    GRID.toml names a base scenario and the axes to vary (see docs/sweep.md). Rows are appended
    to the output CSV as runs finish; an interrupted sweep continues with --resume. Each run is
    verified as usual: a run that fails is a row with status "failed", never a missing one.

    \b
    Exit status: 0 every run ok, 1 some run failed or is missing, 2 bad input, 130 interrupted.
    """
    settings = begin(ctx)
    quiet = settings.quiet
    if resume and overwrite:
        raise click.UsageError("give either --resume or --overwrite")
    if workers is not None and workers < 1:
        raise HotremoveError("--workers: must be at least 1")
    grid = sw.load_grid(grid_file)
    output = output or Path(f"{grid.name}.csv")
    if output.suffix.lower() in (".parquet", ".pq"):
        raise HotremoveError(
            f"--output {output}: results are CSV (Parquet would need pyarrow); name a .csv file"
        )
    if plot_file is not None:
        check_png(plot_file, label="--plot", force=force)  # before the runs it would draw
    from hotremove.plugins import load_plugins

    sw.check_strategies(grid, load_plugins().policies)
    out = stdout_console()
    if list_runs:
        rows, _ = sw.existing_rows(grid, output)
        if not quiet:
            print_table(out, _run_table(grid, rows, output), wide=wide, keys=2)
            print_text(
                out,
                f"{len(grid.runs)} runs over {len(grid.axes)} axes; "
                f"{len(rows)} have rows in {output}",
            )
        return 0
    if not force and not (executor == "dask" and scheduler):  # a cluster has its own memory
        _check_memory(grid, grid_file, workers)
    show = settings.progress
    if show is None:
        show = not quiet and sys.stderr.isatty()
    with progress_bar(tally=True, disable=not show) as bar:
        task = bar.add_task(f"sweep {grid.name}", total=len(grid.runs), tally="")
        tally = {"ok": 0, "failed": 0, "error": 0}

        def started(todo: int, done: int, description: str) -> None:
            bar.update(task, completed=done, description=f"sweep {grid.name} ({description})")

        def landed(run: sw.RunSpec, row: dict[str, Any]) -> None:
            tally[row["status"]] += 1
            text = f"{tally['ok']} ok" + "".join(
                f", {n} {s}" for s, n in tally.items() if s != "ok" and n
            )
            bar.update(task, advance=1, tally=text)

        try:
            result = sw.sweep(
                grid,
                output,
                executor=executor,
                scheduler=scheduler,
                workers=workers,
                resume=resume,
                overwrite=overwrite,
                log_level=settings.log_level,
                on_start=started,
                on_row=landed,
            )
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the pool is stopped by now
            bar.stop()
            rows, _ = sw.existing_rows(grid, output, torn="drop")
            click.echo(
                f"{stopped_line(exc)}: {len(rows)} of {len(grid.runs)} runs have rows in "
                f"{output}; continue with: {PROG} sweep {_quote(grid_file)} -o "
                f"{_quote(output)} --resume",
                err=True,
            )
            return exit_status(exc)
    if not quiet:
        shown = [k for k in grid.axis_keys if k not in grid.aggregated]
        print_table(out, _summary_table(result), wide=wide, keys=len(shown) or 1)
        for line in _footer(result):
            print_text(out, line)
    if result.stray:
        click.echo(
            f"{PROG}: {result.stray} row(s) in {output} are no run of this grid "
            "(was the base or an axis changed?); kept, not summarised",
            err=True,
        )
    if result.lost:
        click.echo(
            f"{PROG}: {len(result.lost)} run(s) lost with their worker "
            f"(first: {result.lost[0].reason}); run again with --resume",
            err=True,
        )
    if quiet and result.exit_status:
        bad = sum(1 for row in result.rows.values() if row["status"] != "ok")
        click.echo(
            f"{PROG}: {bad} run(s) not ok and {len(result.missing)} without a row, "
            f"of {len(grid.runs)} (see {output})",
            err=True,
        )
    if plot_file is not None:
        lines = sw.plot(grid, result.rows, plot_file, force=force)
        if not quiet:
            print_text(out, Text(f"figure: {plot_file} ({lines} lines)", style="dim"))
    return result.exit_status


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def _check_memory(grid: sw.Grid, grid_file: Path, workers: int | None) -> None:
    """Refuse, before any work, a sweep whose largest run, once in each worker at the same
    time, would not fit in this machine's memory (see :mod:`hotremove.sim.memguard`)."""
    from hotremove.scenario import validate
    from hotremove.sim.memguard import available_bytes, estimate_peak_bytes
    from hotremove.sweep.executors import default_workers

    have = available_bytes()
    if not have or not grid.runs:
        return
    need, index = max((estimate_peak_bytes(validate(r.scenario)), r.index) for r in grid.runs)
    largest = grid.runs[index]
    parallel = min(workers or default_workers(), len(grid.runs))
    if need * parallel > have:
        each = f" in each of {parallel} workers at once" if parallel > 1 else ""
        raise HotremoveError(
            f"{grid_file}: run {largest.index} ({largest.label()}) needs about "
            f"{_gib(need)} of RAM{each}, {_gib(have)} is available (fewer workers with -j, a "
            "smaller memory.size or fewer files fit; --force tries anyway)"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


def main(argv: list[str] | None = None) -> None:
    """``python -c "from hotremove.cli.sweep import main; main()" GRID.toml ...``"""
    install_handlers()  # SIGTERM unwinds (143) as it does under `hotremove sweep`
    sweep_command.main(args=argv, prog_name=f"{PROG} sweep")


__all__ = ["main", "sweep_command"]
