"""``hotremove compare``: one scenario twice from identical state, auto against forced writeback;
or, with ``--kernel V,V,...``, once per kernel version, side by side."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hotremove import scenario as scenario_mod
from hotremove.cli.base import PROG, Command
from hotremove.cli.display import steps
from hotremove.cli.execute import Run, execute, failure_line, plugins_for
from hotremove.cli.kernels import print_kernels
from hotremove.cli.output import (
    emit_json,
    print_table,
    print_text,
    stdout_console,
    wide_option,
)
from hotremove.cli.settings import (
    SEED,
    Settings,
    apply_overrides,
    begin,
    check_strategy,
    device_option,
    kernels_option,
    mode_option,
    shared_options,
)
from hotremove.kernels import VERSIONS
from hotremove.model.migrate_mode import DEFAULT_POLICY, WRITEBACK_POLICY
from hotremove.plugins import PluginSet
from hotremove.scenario import Scenario
from hotremove.sim.memguard import check_memory
from hotremove.sim.report import Report
from hotremove.sim.runner import check_faults
from hotremove.units import format_seconds


def ratio(value: float, base: float) -> float | str | None:
    """``value / base`` for the comparison: ``"inf"`` when only the base is zero, ``None`` when
    both are (undefined)."""
    if base == 0:
        return None if value == 0 else "inf"
    return value / base


def _ratio_text(r: float | str | None) -> str:
    if r is None:
        return "—"
    if r == "inf":
        return "∞"
    assert isinstance(r, float)
    return f"×{r:,.0f}" if r >= 100 else f"×{r:.2f}"


RATIO_KEYS = ("writeback_ios", "simulated_seconds", "wall_seconds")
#: the two runs of a comparison without --kernel V,V,...
RUN_POLICIES = (DEFAULT_POLICY, WRITEBACK_POLICY)


@click.command(cls=Command)
@click.argument("scenario_file", metavar="SCENARIO.toml", type=click.Path(path_type=Path))
@click.option("--json", "json_out", is_flag=True, help="Print {auto, writeback, ratios}.")
@click.option("--seed", type=SEED, help="Override workload.seed (both runs).")
@click.option(
    "--force",
    is_flag=True,
    help="Run even when a run's estimated memory need exceeds what this machine has available.",
)
@mode_option()
@device_option()
@kernels_option(
    f"Kernel version(s), comma separated ({', '.join(VERSIONS)}): one overrides [kernel] "
    "version; several run the scenario once per version, side by side."
)
@wide_option
@shared_options
@click.pass_context
def compare(
    ctx: click.Context,
    scenario_file: Path,
    json_out: bool,
    seed: int | None,
    force: bool,
    mode: str | None,
    device: str | None,
    kernels: tuple[str, ...] | None,
    wide: bool,
) -> int:
    """Run a scenario twice on identical state (same seed, fresh images): `auto` strategies
    (rebinding where a plugin can) versus forced `writeback`. Ratios are writeback / auto.

    With --kernel 2004,5.10,6.1,6.12,7.2: the scenario (its own strategy) once per kernel version,
    side by side: outcome, pages migrated, written back, write I/Os, flushed, simulated time,
    failed attempts; --json prints {"scenario", "kernels": {VERSION: report}}."""
    settings = begin(ctx)
    kernel = kernels[0] if kernels and len(kernels) == 1 else None
    base = apply_overrides(
        scenario_mod.load(scenario_file), seed=seed, mode=mode, device=device, kernel=kernel
    )
    plugins = plugins_for(settings)
    name = scenario_file.stem
    if kernels and len(kernels) > 1:
        planned = [base.with_overrides(kernel={"version": v}) for v in kernels]
    else:
        planned = [base.with_overrides(remove={"strategy": p}) for p in RUN_POLICIES]
    for scn in planned:  # a run that would not fit is refused before the first is built
        check_memory(scn, force=force)
    if kernels and len(kernels) > 1:
        return _compare_kernels(base, name, kernels, plugins, settings, json_out, wide)
    each = {p: (p, base.with_overrides(remove={"strategy": p})) for p in RUN_POLICIES}
    runs, _ = _run_each(name, each, plugins, settings, json_out)
    auto = runs[DEFAULT_POLICY].report.as_dict()
    wb = runs[WRITEBACK_POLICY].report.as_dict()
    ratios = {key: ratio(wb[key], auto[key]) for key in RATIO_KEYS}
    status = max(r.report.exit_status for r in runs.values())
    if json_out:
        emit_json({"auto": auto, "writeback": wb, "ratios": ratios})
    elif not settings.quiet:
        _print_comparison(stdout_console(), name, runs, ratios, wide)
    if status and (json_out or settings.quiet):
        for policy, r in runs.items():
            if not r.report.ok:
                click.echo(f"{PROG}: {policy}: {failure_line(r.report)}", err=True)
    return status


def _run_each(
    name: str,
    each: dict[str, tuple[str, Scenario]],
    plugins: PluginSet,
    settings: Settings,
    json_out: bool,
    *,
    stop: bool = False,
) -> tuple[dict[str, Run], bool]:
    """Run every scenario of ``each`` (key → (progress label, scenario)) in turn, showing
    which run compare is on. With ``stop``, a run the user interrupted ends the series;
    returns the runs and whether that happened."""
    runs: dict[str, Run] = {}
    show, settings = _progress(settings, json_out)
    with steps(f"compare {name}", len(each), show=show) as step:
        for key, (label, scenario) in each.items():
            step(label)
            runs[key] = execute(
                scenario,
                name=name,
                plugins=plugins,
                settings=settings,
                json_out=json_out,
                label=f"{name} [{key}]",
            )
            if stop and runs[key].report.interrupted:
                return runs, True
    return runs, False


def _compare_kernels(
    base: Scenario,
    name: str,
    versions: tuple[str, ...],
    plugins: PluginSet,
    settings: Settings,
    json_out: bool,
    wide: bool,
) -> int:
    """``compare --kernel V,V,...``: the scenario once per version, from identical state."""
    check_strategy(base.remove.strategy, plugins)  # before any image is built
    check_faults(base, plugins)
    each = {v: (f"kernel {v}", base.with_overrides(kernel={"version": v})) for v in versions}
    runs, interrupted = _run_each(name, each, plugins, settings, json_out, stop=True)
    if interrupted:
        return 130
    reports = {version: run.report for version, run in runs.items()}
    status = max(r.exit_status for r in reports.values())
    if json_out:
        emit_json({"scenario": name, "kernels": {v: r.as_dict() for v, r in reports.items()}})
    elif not settings.quiet:
        first = next(iter(reports.values())).as_dict()
        out = stdout_console()
        print_text(
            out,
            Text(
                f"hotremove compare: {name} on each kernel (blocks {first['blocks']}, "
                f"{first['device']}, strategy {first['policy']})",
                style="bold",
            ),
        )
        print_kernels(out, None, reports, detail=True, wide=wide)
        print_table(out, _per_aops_by_kernel(reports), wide=wide)
    if status and (json_out or settings.quiet):
        for version, r in reports.items():
            if not r.ok:
                click.echo(f"{PROG}: {version}: {failure_line(r)}", err=True)
    return status


def _per_aops_by_kernel(reports: dict[str, Report]) -> Table:
    """What each kernel did with each a_ops' pages: its strategy, and how many it rebound
    (buffer_heads repointed), moved without buffers (a plain copy, ->private moved), wrote
    back first, or could not move — where each filesystem of a mixed scenario differs."""
    per = {v: r.as_dict()["per_aops"] for v, r in reports.items()}
    table = Table(title="each a_ops' pages on each kernel")
    table.add_column("a_ops", no_wrap=True)
    for version in reports:
        table.add_column(f"Linux {version}" if version != "2004" else "2004 seed")
    for aops in sorted(set().union(*per.values())):
        cells = []
        for version in reports:
            stats = per[version].get(aops)
            if not stats:
                cells.append("—")
                continue
            rebound, written = stats.get("rebound", 0), stats.get("written_back", 0)
            plain = stats.get("migrated", 0) - rebound
            parts = [
                f"{n} {what}"
                for n, what in (
                    (rebound, "rebound"),
                    (plain, "moved"),
                    (written, "written"),
                    (stats.get("failed", 0), "failed"),
                )
                if n
            ]
            cells.append(f"{stats.get('strategy', '?')}\n{', '.join(parts) or 'none'}")
        table.add_row(aops, *cells)
    return table


def _progress(settings: Settings, json_out: bool) -> tuple[bool, Settings]:
    """Whether to show which run compare is on (as ``bench`` decides: ``--progress``, else a
    terminal without ``--json``/``--quiet``), and the settings for the runs themselves: no
    progress display of their own beside that one (two live displays garble a terminal)."""
    show = settings.progress
    if show is None:
        show = not (json_out or settings.quiet) and sys.stderr.isatty()
    return show, dataclasses.replace(settings, progress=False) if show else settings


def _print_comparison(
    out: Console,
    name: str,
    runs: dict[str, Run],
    ratios: dict[str, float | str | None],
    wide: bool,
) -> None:
    """The two runs side by side, then the write I/Os per a_ops: counts first, the auto
    strategy last (at 80 columns it is a second table, keyed by a_ops)."""
    a, w = runs[DEFAULT_POLICY], runs[WRITEBACK_POLICY]
    ad, wd = a.report.as_dict(), w.report.as_dict()
    table = Table(title=f"hotremove compare: {name} (blocks {ad['blocks']}, {ad['device']})")
    table.add_column("")
    for column in ("auto", "writeback", "writeback / auto"):
        table.add_column(column, justify="right")
    rows: list[tuple[str, str, str, str]] = [
        ("pages migrated", str(ad["migrated"]), str(wd["migrated"]), ""),
        ("rebound (no I/O)", str(ad["rebound"]), str(wd["rebound"]), ""),
        ("written back", str(ad["written_back"]), str(wd["written_back"]), ""),
        (
            "write I/Os",
            str(ad["writeback_ios"]),
            str(wd["writeback_ios"]),
            _ratio_text(ratios["writeback_ios"]),
        ),
        (
            "simulated time",
            format_seconds(ad["simulated_seconds"]),
            format_seconds(wd["simulated_seconds"]),
            _ratio_text(ratios["simulated_seconds"]),
        ),
        (
            "wall time (offline)",
            format_seconds(ad["wall_seconds"]),
            format_seconds(wd["wall_seconds"]),
            _ratio_text(ratios["wall_seconds"]),
        ),
        (
            "offlined",
            "yes" if ad["offlined"] else "NO",
            "yes" if wd["offlined"] else "NO",
            "",
        ),
        ("verified", _verdict(a.report), _verdict(w.report), ""),
    ]
    for row in rows:
        table.add_row(*row)
    per = Table(title="write I/Os per a_ops")
    per.add_column("a_ops", no_wrap=True)
    per.add_column("auto", justify="right", no_wrap=True)
    per.add_column("writeback", justify="right", no_wrap=True)
    per.add_column("auto strategy (plugin)", no_wrap=True)
    for aops in sorted(set(ad["per_aops"]) | set(wd["per_aops"])):
        sa, sw = ad["per_aops"].get(aops, {}), wd["per_aops"].get(aops, {})
        per.add_row(
            aops,
            str(sa.get("write_requests", 0)),
            str(sw.get("write_requests", 0)),
            f"{sa.get('strategy', '?')} ({sa.get('plugin', '?')})",
        )
    print_table(out, table, wide=wide)
    print_table(out, per, wide=wide)
    print_text(
        out,
        Text(
            "write I/Os: every request of the run, journal commits included; "
            "per a_ops: each page's own writeback.",
            style="dim",
        ),
    )


def _verdict(report: Report) -> str:
    if report.verify is None:
        return "not run"
    return "yes" if report.verify.ok else "NO"
