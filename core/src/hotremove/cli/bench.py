"""``hotremove bench``: the performance benchmark (see :mod:`hotremove.bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import structlog
from rich.console import Console
from rich.table import Table

from hotremove import log as hlog
from hotremove.bench import run_bench, run_scaling
from hotremove.errors import ScenarioError
from hotremove.scenario import parse_size
from hotremove.workload import default_image_cache as default_cache


def _size(value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise ScenarioError(f"--size: {exc}") from None
    if size < (8 << 20) or size % (8 << 20):
        raise ScenarioError("--size: must be a multiple of 8MiB (e.g. 256MiB, 1GiB)")
    return size


@click.command("bench")
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
    default=("auto", "writeback"),
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
def bench_command(
    size: str,
    dirty: float,
    checks: str,
    strategies: tuple[str, ...],
    scaling: str | None,
    cache: Path | None,
    no_cache: bool,
    json_out: bool,
) -> None:
    """Offline a region full of ext2 page cache; print pages/s, memory and simulated cost."""
    if not structlog.is_configured():  # run on its own: logs to stderr, stdout stays JSON
        hlog.configure("warning", "auto")
    region = _size(size)
    image_cache = None if no_cache else (cache or default_cache())
    out = run_bench(region, dirty, checks, tuple(strategies), image_cache)
    if scaling:
        sizes = [_size(s) for s in scaling.split(",") if s.strip()]
        out["scaling"] = run_scaling(sizes, dirty, image_cache)
    if json_out:
        click.echo(json.dumps(out, indent=2))
    else:
        _print(out)
    ok = out["ok"] and (not scaling or out["scaling"]["ok"])
    raise SystemExit(0 if ok else 1)


def _print(out: dict) -> None:
    console = Console()
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
            f"{r['build_over_offline']:.1f}",
            str(r["batched_pages"]),
            str(r["writeback_ios"]),
            f"{r['simulated_seconds_by_preset']['ide-2004']:.3f}",
            f"{r['metadata_bytes_per_page']:.0f}",
            "yes" if r["verified"] else "NO",
        )
    console.print(table)
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
