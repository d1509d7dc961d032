"""``hotremove demo`` and ``hotremove run``: one scenario (or real memory blocks of a snapshot)
built, offlined, verified and reported."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import click
import structlog
from click.core import ParameterSource
from rich.text import Text

from hotremove import scenario as scenario_mod
from hotremove.cli.base import PROG, Command
from hotremove.cli.display import facts
from hotremove.cli.execute import execute, failure_line, keep_dir, plugins_for
from hotremove.cli.kernels import KernelRun, RunError, print_kernels, summary
from hotremove.cli.output import emit_json, stdout_console
from hotremove.cli.settings import (
    RunOptions,
    Settings,
    begin,
    check_strategy,
    log,
    run_options,
    shared_options,
)
from hotremove.errors import HotremoveError
from hotremove.kernels import DEFAULT_KERNEL, VERSIONS, get_kernel
from hotremove.locking import lockdep
from hotremove.model.migrate_mode import DEFAULT_POLICY, MigrateMode
from hotremove.plugins import PluginSet
from hotremove.scenario import Scenario
from hotremove.sim.memguard import check_memory, check_plan_memory
from hotremove.sim.report import Report, print_report
from hotremove.sim.runner import check_faults
from hotremove.units import format_seconds


def builtin_text(name: str) -> str:
    """A scenario file shipped with hotremove (``demo.toml``, ``example.toml``)."""
    return resources.files("hotremove").joinpath("scenarios", name).read_text(encoding="utf-8")


def demo_scenario() -> Scenario:
    return scenario_mod.loads(builtin_text("demo.toml"), source="demo.toml")


@click.command(cls=Command)
@run_options
@shared_options
@click.pass_context
def demo(ctx: click.Context, opts: RunOptions) -> int:
    """Run the built-in demo: ext2, ext3 (ordered and journal), ext4 and anonymous pages
    spread over a 512 MiB machine; offline memory blocks 2 and 5 on Linux 6.1, then the same
    scenario on every modelled kernel (2004, 5.10, 6.1, 6.12, 7.2), side by side.

    --kernel V runs only V. See the scenario with `hotremove scenario --demo`.
    """
    return show_run(
        ctx,
        opts.apply(demo_scenario()),
        "demo",
        opts,
        header="hotremove demo: offline two memory blocks full of page cache from real images",
        footer="rebinding vs forced writeback: uv run hotremove scenario --demo > demo.toml "
        "&& uv run hotremove compare demo.toml",
        kernels=() if opts.kernel else VERSIONS,
    )


@click.command(cls=Command)
@click.argument(
    "scenario_file", metavar="SCENARIO.toml", required=False, type=click.Path(path_type=Path)
)
@run_options
@click.option(
    "--snapshot",
    "snapshot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instead of a scenario: rebuild real memory blocks from `hotremove snapshot`.",
)
@click.option(
    "--blocks",
    metavar="N[,N...]",
    help="The memory blocks to remove (with a scenario: overrides remove.blocks).",
)
@click.option("--fs", "fs_type", metavar="TYPE", help="With --snapshot: page-cache filesystem.")
@click.option("--fs-options", metavar="OPTS", help="With --snapshot: its options (comma list).")
@click.option(
    "--flagless",
    type=click.Choice(["free", "unmovable"]),
    default="free",
    help="With --snapshot: how to read pages that carry no flags (as `plan` does).",
)
@shared_options
@click.pass_context
def run(
    ctx: click.Context,
    scenario_file: Path | None,
    opts: RunOptions,
    snapshot_file: Path | None,
    blocks: str | None,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """Run one scenario: build the machine, offline the blocks, verify, report.

    Command-line options override the scenario file. With --snapshot SNAPSHOT --blocks N the
    machine is rebuilt from real memory blocks of a snapshot instead (what `plan` predicted).

    Images come from the image cache ($HOTREMOVE_CACHE/images, else
    ~/.cache/hotremove/images; never written: each run gets its own copy-on-write image);
    --keep-images DIR makes them afresh (each type's mkfs tool) in DIR instead.
    """
    if snapshot_file is not None:
        if scenario_file is not None:
            raise HotremoveError("give a scenario file or --snapshot, not both")
        if opts.kernel is not None and opts.kernel != DEFAULT_KERNEL:
            raise HotremoveError(
                f"--kernel: a --snapshot run simulates Linux {DEFAULT_KERNEL} only (for now)"
            )
        # what a snapshot run does not use is refused, never silently ignored
        for option, value in (
            ("--seed", opts.seed),
            ("--checks", opts.checks_mode),
            ("--fault", opts.faults or None),
        ):
            if value is not None:
                raise HotremoveError(f"{option}: not with --snapshot (a scenario file's option)")
        return _run_snapshot(ctx, snapshot_file, blocks, opts, fs_type, fs_options, flagless)
    if scenario_file is None:
        raise HotremoveError("missing SCENARIO.toml (or --snapshot SNAPSHOT --blocks N)")
    for option, name in (
        ("--fs", "fs_type"),
        ("--fs-options", "fs_options"),
        ("--flagless", "flagless"),
    ):
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
            raise HotremoveError(
                f"{option}: only with --snapshot (a scenario file names its own filesystems)"
            )
    scn = scenario_mod.load(scenario_file)
    if blocks is not None:  # --blocks overrides remove.blocks, as every option overrides the file
        scn = scn.with_overrides(remove={"blocks": _parse_blocks(blocks)})
    return show_run(
        ctx, opts.apply(scn), scenario_file.stem, opts, header=f"hotremove run: {scenario_file}"
    )


#: more blocks than any machine has: a --blocks list past this is a typo or hostile input
MAX_BLOCKS_LISTED = 1 << 16


def _parse_blocks(blocks: str | None) -> list[int]:
    """``--blocks 1,3``: memory block numbers, each given once."""
    if not blocks:
        raise HotremoveError("--blocks: name the memory blocks to remove (e.g. 12)")
    words = [b.strip() for b in blocks.split(",") if b.strip()]
    if not words or len(words) > MAX_BLOCKS_LISTED:
        raise HotremoveError(f"--blocks: not a list of block numbers: {blocks[:40]!r}")
    numbers: list[int] = []
    for word in words:
        if not word.isascii() or not word.isdigit() or len(word) > 12:
            raise HotremoveError(f"--blocks: {word[:40]!r} is not a block number")
        if int(word) in numbers:
            raise HotremoveError(f"--blocks: block {int(word)} is given twice")
        numbers.append(int(word))
    return numbers


def _run_snapshot(
    ctx: click.Context,
    snapshot_file: Path,
    blocks: str | None,
    opts: RunOptions,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """``run --snapshot``: the measurement a plan's prediction is checked against."""
    from hotremove.realmachine.plan import resolve_fs
    from hotremove.realmachine.run import run_snapshot
    from hotremove.realmachine.snapshot import load as load_snapshot

    settings = begin(ctx)
    plugins = plugins_for(settings)
    policy = opts.strategy or DEFAULT_POLICY
    check_strategy(policy, plugins)
    snap = load_snapshot(snapshot_file, check_memory=None if opts.force else check_plan_memory)
    report = run_snapshot(
        snap,
        _parse_blocks(blocks),
        plugins=plugins,
        workdir=keep_dir(opts.keep_images, force=opts.force),
        fs=resolve_fs(snap, fs_type, fs_options),
        device=opts.device or "nvme",
        policy=policy,
        flagless=flagless,
        mode=opts.mode or MigrateMode.SYNC.value,
    )
    if opts.json_out:
        emit_json(report.as_dict())
    elif not settings.quiet:
        print_report(report, stdout_console())
    if not report.ok and not opts.json_out:
        click.echo(f"{PROG}: {failure_line(report)}", err=True)
    return report.exit_status


def show_run(
    ctx: click.Context,
    scn: Scenario,
    name: str,
    opts: RunOptions,
    *,
    header: str | None = None,
    footer: str | None = None,
    kernels: Sequence[str] | None = None,
) -> int:
    """``run`` and ``demo``: one run, its report as JSON or tables, its exit status.

    ``kernels`` (the demo): after the main run, the same scenario on each of these versions
    (the main run stands for its own), a table of them, and ``"kernels"`` in the JSON (with
    no versions: the main run's summary alone). The exit status stays the main run's."""
    settings = begin(ctx)
    if opts.checks_mode is not None:
        scn = scn.with_overrides(remove={"checks": opts.checks_mode != "off"})
    plugins = plugins_for(settings)
    check_strategy(scn.remove.strategy, plugins)  # before any image is built
    check_faults(scn, plugins)
    check_memory(scn, force=opts.force)  # refused before anything is built
    workdir = keep_dir(opts.keep_images, force=opts.force)
    human = not opts.json_out and not settings.quiet
    out = stdout_console()
    if human and header:
        out.print(Text(header, style="bold"))
        for topic, text in facts(scn):
            out.print(f"  {topic:<12} {text}")
        out.print()
    try:
        with lockdep.checks(opts.checks_mode or "off"):
            run = execute(
                scn,
                name=name,
                plugins=plugins,
                settings=settings,
                json_out=opts.json_out,
                workdir=workdir,
            )
    except lockdep.LockdepStop as stop:  # --checks strict: the first violation ends the run
        click.echo(stop.violation.details, err=True)
        click.echo(f"{PROG}: stopped at the first lock violation (--checks strict)", err=True)
        return 1
    report: Report = run.report
    status = report.exit_status
    each = kernels is not None and not report.interrupted and (opts.json_out or human)
    if opts.json_out:
        out_json = report.as_dict()
        if each:
            assert kernels is not None
            reports = _each_kernel(scn, report, kernels, name, plugins, settings, opts)
            out_json["kernels"] = {v: summary(r) for v, r in reports.items()}
            status = 130 if any(r.interrupted for r in reports.values()) else status
        emit_json(out_json)
    if human:
        print_report(report, out)
        out.print(
            Text(
                f"whole run: {format_seconds(run.wall_seconds)} wall, including the images "
                f"({'made afresh' if workdir else 'made or from the image cache'}), filling the "
                "page "
                "cache and verification" + (f"; images kept in {workdir}" if workdir else ""),
                style="dim",
            )
        )
        if each and kernels:
            reports = _each_kernel(scn, report, kernels, name, plugins, settings, opts)
            if any(r.interrupted for r in reports.values()):
                return 130
            out.print()
            print_kernels(out, "the same scenario on each kernel", reports)
        if footer:
            out.print(Text(footer, style="dim"))
    elif not report.ok:
        click.echo(f"{PROG}: {failure_line(report)}", err=True)
    return status


def _each_kernel(
    scn: Scenario,
    main: Report,
    versions: Sequence[str],
    name: str,
    plugins: PluginSet,
    settings: Settings,
    opts: RunOptions,
) -> dict[str, KernelRun]:
    """The scenario on each of ``versions`` (the main run stands for its own kernel), with a
    line per run on stderr; a Ctrl-C ends the series at the interrupted run."""
    version = main.offline.kernel
    if not versions:
        return {version: main}
    say = settings.progress if settings.progress is not None else not settings.quiet
    say = say and (settings.progress is True or not opts.json_out)
    # a strict lock check stops one run; here every version must finish to be compared
    checks = "on" if opts.checks_mode == "strict" else (opts.checks_mode or "off")
    reports: dict[str, KernelRun] = {}
    for v in versions:
        if v == version:
            reports[v] = main
            continue
        if say:
            click.echo(f"{PROG} {name}: the same scenario on {get_kernel(v).title} …", err=True)
        try:
            with lockdep.checks(checks):
                reports[v] = execute(
                    scn.with_overrides(kernel={"version": v}),
                    name=name,
                    plugins=plugins,
                    settings=settings,
                    json_out=opts.json_out,
                    label=f"{name} [{v}]",
                ).report
        except Exception as exc:  # the main run decides the status; this one is a row
            structlog.contextvars.unbind_contextvars("scenario", "seed")  # the runner's
            reports[v] = RunError(v, f"{type(exc).__name__}: {exc}")
            log.error("kernel_run_failed", kernel=v, error=reports[v].error)
        if reports[v].interrupted:
            break
    return reports


__all__ = ["builtin_text", "demo", "demo_scenario", "run", "show_run"]
