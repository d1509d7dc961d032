"""``hotremove bench``: the performance benchmark (see :mod:`hotremove.bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from hotremove.bench import run_bench, run_scaling
from hotremove.cli.base import Command
from hotremove.cli.display import progress_bar
from hotremove.cli.output import emit_json, print_table, stdout_console
from hotremove.cli.settings import begin, check_strategy, shared_options
from hotremove.errors import ScenarioError
from hotremove.model.migrate_mode import BUILTIN_POLICIES
from hotremove.plugins import load_plugins
from hotremove.scenario import parse_size
from hotremove.workload import default_image_cache as default_cache


def _region_size(value: str, option: str = "--size") -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise ScenarioError(f"{option}: {exc}") from None
    if size < (8 << 20) or size % (8 << 20):
        raise ScenarioError(f"{option}: must be a multiple of 8MiB (e.g. 256MiB, 1GiB)")
    return size


@click.command("bench", cls=Command)
@click.option("--size", default="1GiB", show_default=True, help="Size of the removed region.")
@click.option(
    "--dirty",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of pages with dirty buffers.",
)
@click.option(
    "--checks",
    type=click.Choice(["off", "on", "both"]),
    default="off",
    show_default=True,
    help="Per-step checks (poison, flags, bh pointers).",
)
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    default=BUILTIN_POLICIES,
    show_default=True,
    help="Strategies to time (repeatable).",
)
@click.option(
    "--scaling",
    "scaling",
    default=None,
    help="Also time auto at these sizes, e.g. 256MiB,1GiB,4GiB.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Image cache directory [default: ~/.cache/hotremove/images].",
)
@click.option("--no-cache", is_flag=True, help="Always build fresh images.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout.")
@shared_options
@click.pass_context
def bench_command(
    ctx: click.Context,
    size: str,
    dirty: float,
    checks: str,
    strategies: tuple[str, ...],
    scaling: str | None,
    cache: Path | None,
    no_cache: bool,
    json_out: bool,
) -> int:
    """Offline a region full of ext2 page cache; print pages/s, memory and simulated cost."""
    settings = begin(ctx)
    region = _region_size(size)
    plugins = load_plugins()
    for strategy in strategies:
        check_strategy(strategy, plugins, option="--strategy")
    # every value is checked before the first benchmark runs
    sizes = [_region_size(s, "--scaling") for s in (scaling or "").split(",") if s.strip()]
    image_cache = None if no_cache else (cache or default_cache())
    total = len(strategies) * (2 if checks == "both" else 1) + len(sizes)
    show = settings.progress
    if show is None:
        show = not (json_out or settings.quiet) and sys.stderr.isatty()
    with progress_bar(disable=not show) as bar:
        task = bar.add_task("bench", total=total)
        started = [0]

        def starting(description: str) -> None:
            bar.update(task, completed=started[0], description=f"bench {description}")
            started[0] += 1

        out = run_bench(region, dirty, checks, tuple(strategies), image_cache, starting)
        if sizes:
            out["scaling"] = run_scaling(sizes, dirty, image_cache, starting)
        bar.update(task, completed=total, description="bench")
    if json_out:
        emit_json(out)
    elif not settings.quiet:
        _print(out)
    ok = out["ok"] and (not scaling or out["scaling"]["ok"])
    return 0 if ok else 1


def _print(out: dict) -> None:
    console = stdout_console()
    table = Table(
        title=f"hotremove bench: {out['size_bytes'] >> 20} MiB region, "
        f"{out['dirty']:.0%} dirty, ext2 1 KiB blocks"
    )
    for col in (
        "strategy",
        "checks",
        "pages",
        "pages/s",
        "build s",
        "offline s",
        "verify s",
        "whole s",
        "build ÷ offline",
        "batched",
        "write I/Os",
        "simulated s (ide-2004)",
        "metadata B/page",
        "verified",
    ):
        table.add_column(col, justify="left" if col in ("strategy", "checks") else "right")
    for r in out["runs"]:
        table.add_row(
            r["strategy"],
            r["checks"],
            str(r["pages"]),
            f"{r['pages_per_second']:,.0f}",
            f"{r['build_seconds']:.2f}",
            f"{r['offline_seconds']:.3f}",
            f"{r['verify_seconds']:.2f}",
            f"{r['whole_seconds']:.2f}",
            f"{r['build_over_offline']:.1f}",
            str(r["batched_pages"]),
            str(r["writeback_ios"]),
            f"{r['simulated_seconds_by_preset']['ide-2004']:.3f}",
            f"{r['metadata_bytes_per_page']:.0f}",
            "yes" if r["verified"] else "NO",
        )
    print_table(console, table)
    if "writeback_over_auto" in out:
        ratios = ", ".join(f"{k} {v:,.0f}×" for k, v in out["writeback_over_auto"].items())
        console.print(f"forced writeback / rebinding, simulated time: {ratios}")
    if "checks_slowdown" in out:
        console.print(f"per-step checks on / off: {out['checks_slowdown']:.2f}×")
    if "scaling" in out:
        rows = ", ".join(
            f"{r['pages']} pages: {r['microseconds_per_page']:.2f} µs/page"
            for r in out["scaling"]["scaling"]
        )
        flat = "flat" if out["scaling"]["flat"] else "NOT flat"
        console.print(f"scaling ({flat}): {rows}")
