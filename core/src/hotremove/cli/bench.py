"""``hotremove bench``: the performance benchmark (see :mod:`hotremove.sim.bench`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from hotremove.cli.base import Command
from hotremove.cli.display import progress_bar
from hotremove.cli.output import emit_json, print_table, print_text, stdout_console, wide_option
from hotremove.cli.params import Digits
from hotremove.cli.settings import begin, check_strategy, shared_options
from hotremove.errors import ScenarioError
from hotremove.model.migrate_mode import BUILTIN_POLICIES
from hotremove.plugins import load_plugins
from hotremove.scenario import parse_size
from hotremove.sim.bench import KERNEL_REFERENCE, bench_scenario, run_bench, run_scaling
from hotremove.sim.memguard import check_memory
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
@click.option(
    "--repeat",
    type=Digits(1, 100),
    default=1,
    show_default=True,
    help="Run each configuration this many times; report medians and ranges.",
)
@click.option(
    "--first-run", is_flag=True,
    help="Instead: a whole run of a new 1 GiB scenario with its images not cached, beside "
    "the same run cached (build, offline, verification).",
)  # fmt: skip
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout.")
@click.option("--force", is_flag=True, help="Run even when the memory estimate says it won't fit.")
@wide_option
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
    repeat: int,
    first_run: bool,
    json_out: bool,
    force: bool,
    wide: bool,
) -> int:
    """Offline a region full of ext2 page cache; print pages/s, memory and simulated cost."""
    settings = begin(ctx)
    if first_run:
        return _first_run(settings, repeat, json_out, force, wide)
    region = _region_size(size)
    plugins = load_plugins()
    for strategy in strategies:
        check_strategy(strategy, plugins, option="--strategy")
    # every value is checked before the first benchmark runs
    sizes = [_region_size(s, "--scaling") for s in (scaling or "").split(",") if s.strip()]
    for each in [region, *sizes]:  # refused before any work (memguard)
        check_memory(bench_scenario(each, dirty, False, "auto"), force=force)
    image_cache = None if no_cache else (cache or default_cache())
    total = repeat * (len(strategies) * (2 if checks == "both" else 1) + len(sizes))
    show = settings.progress
    if show is None:
        show = not (json_out or settings.quiet) and sys.stderr.isatty()
    with progress_bar(disable=not show) as bar:
        task = bar.add_task("bench", total=total)
        started = [0]

        def starting(description: str) -> None:
            bar.update(task, completed=started[0], description=f"bench {description}")
            started[0] += 1

        out = run_bench(region, dirty, checks, tuple(strategies), image_cache, starting, repeat)
        if sizes:
            out["scaling"] = run_scaling(sizes, dirty, image_cache, starting, repeat)
        bar.update(task, completed=total, description="bench")
    if json_out:
        emit_json(out)
    elif not settings.quiet:
        _print(out, wide)
    ok = out["ok"] and (not scaling or out["scaling"]["ok"])
    return 0 if ok else 1


def _rss(r: dict) -> str:
    return f"{r['peak_rss_bytes'] / (1 << 30):.2f} GiB"


#: (header, cell) of every column of a run, in --wide order; the first two name the run
COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("strategy", lambda r: r["strategy"]),
    ("checks", lambda r: r["checks"]),
    ("pages", lambda r: f"{r['pages']:,}"),
    ("pages/s", lambda r: f"{r['pages_per_second']:,.0f}"),
    ("offline s", lambda r: f"{r['offline_seconds']:.3f}"),
    ("× copy", lambda r: f"{r['offline_over_plain_copy']:.1f}"),
    ("× kernel", lambda r: f"{r['offline_over_kernel']:.1f}" if r["offline_over_kernel"] else "–"),
    ("verified", lambda r: "yes" if r["verified"] else "NO"),
    ("build s", lambda r: f"{r['build_seconds']:.2f}"),
    ("image s", lambda r: f"{r['image_copy_seconds']:.2f}"),
    ("verify s", lambda r: f"{r['verify_seconds']:.2f}"),
    ("whole s", lambda r: f"{r['whole_seconds']:.2f}"),
    ("peak RSS", _rss),
    ("÷ RAM", lambda r: f"{r['peak_rss_over_ram']:.2f}"),
    ("÷ in use", lambda r: f"{r['peak_rss_over_in_use']:.2f}"),
    ("batched", lambda r: f"{r['batched_pages']:,}"),
    ("write I/Os", lambda r: f"{r['writeback_ios']:,}"),
    ("sim. s ide-2004", lambda r: f"{r['simulated_seconds_by_preset']['ide-2004']:.3f}"),
    ("meta B/page", lambda r: f"{r['metadata_bytes_per_page']:.0f}"),
]


#: the figures whose range over ``--repeat`` runs is printed: (label, field, format)
RANGES = [
    ("pages/s", "pages_per_second", "{:,.0f}"),
    ("offline s", "offline_seconds", "{:.3f}"),
    ("whole s", "whole_seconds", "{:.2f}"),
    ("peak RSS ÷ in use", "peak_rss_over_in_use", "{:.2f}"),
]


def _span(bounds: list[float], fmt: str) -> str:
    return f"{fmt.format(bounds[0])}–{fmt.format(bounds[1])}"


def _print(out: dict, wide: bool) -> None:
    """One table of the runs (split into tables that repeat strategy and checks when it is
    wider than the terminal, unless ``wide``), then the ratios the issue's goals are about."""
    console = stdout_console()
    table = Table(
        title=f"hotremove bench: {out['size_bytes'] >> 20} MiB region, "
        f"{out['dirty']:.0%} dirty, ext2 1 KiB blocks"
        + (f", median of {out['repeat']} runs" if out.get("repeat", 1) > 1 else "")
    )
    for header, _ in COLUMNS:
        table.add_column(header, justify="left" if header in ("strategy", "checks") else "right")
    for r in out["runs"]:
        table.add_row(*(cell(r) for _, cell in COLUMNS))
    print_table(console, table, wide=wide, keys=2)
    lines = []
    if out.get("repeat", 1) > 1:
        for r in out["runs"]:
            spread = "; ".join(
                f"{label} {_span(r['range'][field], fmt)}" for label, field, fmt in RANGES
            )
            lines.append(f"{r['strategy']}, checks {r['checks']}, range: {spread}")
    first = out["runs"][0]
    lines.append(
        f"plain copy of the region's bytes (numpy.copyto): {first['plain_copy_seconds']:.3f} s; "
        "× copy = offline ÷ plain copy"
    )
    lines.append(
        f"the kernel's own migration: {first['kernel_pages_per_second']:,.0f} pages/s "
        f"({KERNEL_REFERENCE}); × kernel = offline ÷ the kernel's time for as many pages"
    )
    if "checks_slowdown" in out:
        lines.append(f"per-step checks on ÷ off: {out['checks_slowdown']:.2f}×")
    if "fallback_pages_per_second" in out:
        lines.append(
            f"fallback (forced writeback): {out['fallback_pages_per_second']:,.0f} pages/s"
        )
    if "writeback_over_auto" in out:
        ratios = ", ".join(f"{k} {v:,.0f}×" for k, v in out["writeback_over_auto"].items())
        lines.append(f"forced writeback ÷ rebinding, simulated time: {ratios}")
    if "scaling" in out:
        rows = ", ".join(
            f"{r['pages']:,} pages: {r['microseconds_per_page']:.2f} µs/page, "
            f"peak RSS ÷ in use {r['peak_rss_over_in_use']:.2f}"
            for r in out["scaling"]["scaling"]
        )
        flat = "flat" if out["scaling"]["flat"] else "NOT flat"
        lines.append(f"scaling ({flat}): {rows}")
    for line in lines:
        print_text(console, line)


def _first_run(settings: Any, repeat: int, json_out: bool, force: bool, wide: bool) -> int:
    """``--first-run``: see :mod:`hotremove.sim.firstrun`."""
    from hotremove.sim.firstrun import first_run_scenario, run_first

    check_memory(first_run_scenario(), force=force)
    show = settings.progress
    if show is None:
        show = not (json_out or settings.quiet) and sys.stderr.isatty()
    with progress_bar(disable=not show) as bar:
        task = bar.add_task("bench", total=2 * repeat)
        started = [0]

        def starting(what: str) -> None:
            bar.update(task, completed=started[0], description=f"bench {what}")
            started[0] += 1

        out = run_first(repeat, starting)
        bar.update(task, completed=2 * repeat, description="bench")
    if json_out:
        emit_json(out)
    elif not settings.quiet:
        table = Table(title="whole run of a new 1 GiB scenario (4,000 × 256 KiB, ext2, 30 % dirty)")
        for column in ("images", "build s", "offline s", "verify s", "whole s", "verified"):
            table.add_column(column, justify="left" if column == "images" else "right")
        for kind, r in out["runs"].items():
            cells = [
                f"{r[key]:.2f}" + (f" [{lo:.2f}–{hi:.2f}]" if repeat > 1 else "")
                for key in ("build_seconds", "offline_seconds", "verify_seconds", "whole_seconds")
                for lo, hi in [r[f"{key}_range"]]
            ]
            table.add_row(kind, *cells, "yes" if r["verified"] else "NO")
        print_table(stdout_console(), table, wide=wide)
    return 0 if out["ok"] else 1
