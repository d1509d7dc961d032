"""``hotremove kernel``: the scenario on Debian's real Linux 5.10 / 6.1 / 6.12 / 7.2 under QEMU.

* ``kernel fetch VERSION`` — download and cache the kernel and its initramfs (exit 1, one
  line, when the archive cannot be read).
* ``kernel run SCENARIO --kernel V`` — replay the workload in a guest, offline the blocks,
  report what the kernel did (exit 0: offlined and verified; 1: not offlined, a file differs,
  or the guest failed — the message names the kept console log).
* ``kernel diff SCENARIO --kernel V[,V]`` — the simulator and the real kernel side by side,
  with each metric's tolerance (exit 0: every row agrees; 1: some row does not).
* ``kernel plan-check SCENARIO --kernel V`` — ``hotremove plan`` on a snapshot taken in the
  guest, against offlining every DIMM block there (exit 0: every go / no-go call right).

Errors in the input are one line ``hotremove: error: …`` and exit status 2; progress goes to
stderr, ``--json`` prints one object on stdout.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hotremove import scenario as scenario_mod
from hotremove.cli.base import CONTEXT_SETTINGS, PROG, Group, error, run_command
from hotremove.cli.kernel_tables import render, render_rows
from hotremove.cli.output import emit_json, stdout_console
from hotremove.cli.params import Digits
from hotremove.cli.settings import begin, shared_options
from hotremove.errors import HotremoveError
from hotremove.fileio import check_png
from hotremove.realkernel.apt import ArchiveError
from hotremove.realkernel.fetch import KNOWN_VERSIONS, check_version, fetch_kernel
from hotremove.realkernel.qemu import GuestError
from hotremove.realkernel.report import GuestReport
from hotremove.realkernel.timeline import on_guest_timeline
from hotremove.scenario import Scenario


def simulate(scenario: Scenario, version: str) -> dict[str, Any]:
    """The simulator's report for ``scenario`` with ``[kernel] version`` set to ``version``."""
    from hotremove.sim.runner import run_scenario

    if "kernel" in type(scenario).model_fields:  # the simulator models kernel versions
        scenario = scenario.with_overrides(kernel={"version": version})
    report = run_scenario(scenario, name=f"simulated-{version}")
    return report.as_dict()


def _scenario_version(scenario: Scenario) -> str:
    """The scenario's ``[kernel] version`` when the schema has one, else "" (an error)."""
    kernel_section = getattr(scenario, "kernel", None)
    if kernel_section is None or "version" not in kernel_section.model_fields_set:
        return ""  # the schema's default version is the simulator's, not a choice to boot
    return str(kernel_section.version)


def _versions(value: str) -> list[str]:
    versions = [v.strip() for v in value.split(",") if v.strip()]
    if not versions:
        raise HotremoveError(f"--kernel: name a version ({', '.join(KNOWN_VERSIONS)})")
    return [check_version(v) for v in versions]


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    def say(message: str) -> None:
        if not quiet:
            click.echo(f"{PROG} kernel: {message}", err=True)

    return say


def _fail(message: str) -> int:
    """A guest that gave no result: the one-line error, but exit status 1 (not bad input)."""
    error(message)
    return 1


def _guest_run(
    scenario: Scenario,
    version: str,
    *,
    name: str,
    keep: Path | None,
    timeout: float | None,
    offline_timeout: int | None,
    quiet: bool,
) -> GuestReport:
    """One guest run in ``keep`` or a temporary directory, removed on success only (a
    failure's console log must survive for the message that names it)."""
    from hotremove.realkernel.run import run_in_guest

    workdir = keep or Path(tempfile.mkdtemp(prefix=f"hotremove-kernel-{version}-"))
    report = run_in_guest(
        scenario,
        version,
        workdir=workdir,
        timeout=timeout,
        name=name,
        offline_seconds=offline_timeout,
        progress=_progress(quiet),
    )
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
        report.console_log = ""
    return report


@click.group("kernel", cls=Group, context_settings=CONTEXT_SETTINGS)
def kernel() -> None:
    """Run scenarios on Debian's real Linux kernels (5.10, 6.1, 6.12, 7.2) under QEMU."""


@kernel.command("fetch")
@click.argument("version")
@shared_options
@click.pass_context
def fetch_cmd(ctx: click.Context, version: str) -> int:
    """Download Debian's kernel VERSION (5.10, 6.1, 6.12 or 7.2) and build its initramfs
    (cached)."""
    settings = begin(ctx)
    try:
        bundle = fetch_kernel(version, progress=_progress(settings.quiet))
    except ArchiveError as exc:
        return _fail(str(exc))
    if not settings.quiet:
        click.echo(f"{bundle.version}: {bundle.release} ({bundle.package}) in {bundle.directory}")
    return 0


_kernel_option = click.option(
    "--kernel",
    "version",
    default=None,
    help="Kernel version: 5.10, 6.1, 6.12 or 7.2 (default: the scenario's [kernel] version).",
)
_scenario_arg = click.argument("scenario_file", metavar="SCENARIO", type=click.Path(path_type=Path))
_timeout_opt = click.option(
    "--timeout",
    type=click.FloatRange(min=10),
    default=None,
    help="Wall-clock limit of a guest (s).",
)
_offline_opt = click.option(
    "--offline-timeout",
    type=Digits(1, 3600),
    default=None,
    help="Give up one block's offline after this many seconds (signal → -EINTR); "
    "default: the scenario's remove.timeout.",
)
_keep_opt = click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep images, job disk and console log in this directory.",
)


def _guest_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """What ``run`` and ``diff`` share after their ``--kernel``: --json, the time limits,
    --keep, the shared options and the context."""
    for decorate in reversed(
        (
            click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout."),
            _timeout_opt,
            _offline_opt,
            _keep_opt,
            shared_options,
            click.pass_context,
        )
    ):
        func = decorate(func)
    return func


@kernel.command("run")
@_scenario_arg
@_kernel_option
@_guest_options
def run_cmd(
    ctx: click.Context,
    scenario_file: Path,
    version: str,
    json_out: bool,
    timeout: float | None,
    offline_timeout: int | None,
    keep: Path | None,
) -> int:
    """Replay SCENARIO's workload on a real kernel, offline its blocks, report."""
    settings = begin(ctx)
    if version is not None:
        check_version(version)
    scn = scenario_mod.load(scenario_file)
    version = _versions(version or _scenario_version(scn))[0]
    try:
        report = _guest_run(
            scn,
            version,
            name=str(scenario_file),
            keep=keep,
            timeout=timeout,
            offline_timeout=offline_timeout,
            quiet=settings.quiet or json_out,
        )
    except (GuestError, ArchiveError) as exc:
        return _fail(str(exc))
    if json_out:
        emit_json(report.as_dict())
    elif not settings.quiet:
        stdout_console().print(render(report))
    return report.exit_status


@kernel.command("diff")
@_scenario_arg
@click.option(
    "--kernel",
    "versions",
    default=None,
    help="Kernel version(s), e.g. 7.2 or 5.10,6.1,6.12,7.2 (default: the scenario's [kernel] "
    "version).",
)
@_guest_options
def diff_cmd(
    ctx: click.Context,
    scenario_file: Path,
    versions: str,
    json_out: bool,
    timeout: float | None,
    offline_timeout: int | None,
    keep: Path | None,
) -> int:
    """The simulator and the real kernel on SCENARIO, metric by metric."""
    from hotremove.realkernel.diff import all_agree, compare

    settings = begin(ctx)
    if versions is not None:
        _versions(versions)
    scn = scenario_mod.load(scenario_file)
    chosen = _versions(versions or _scenario_version(scn))
    quiet = settings.quiet or json_out
    out: dict[str, Any] = {"scenario": str(scenario_file), "kernels": {}}
    agree = True
    for version in chosen:
        try:
            real = _guest_run(
                scn,
                version,
                name=str(scenario_file),
                keep=keep / version if keep else None,
                timeout=timeout,
                offline_timeout=offline_timeout,
                quiet=quiet,
            )
        except (GuestError, ArchiveError) as exc:
            return _fail(str(exc))
        timed, timeline = on_guest_timeline(scn, real)
        _progress(quiet)(
            f"simulating for {version} on the guest's timeline "
            + ", ".join(f"{k}={v:g}" for k, v in timeline.items())
        )
        sim = simulate(timed, version)
        rows = compare(sim, real.as_dict())
        agree = agree and all_agree(rows)
        out["kernels"][version] = {
            "rows": rows,
            "agree": all_agree(rows),
            "timeline": timeline,
            "real": real.as_dict(),
            "simulated": {k: sim.get(k) for k in _SIM_KEYS},
        }
        if not quiet:
            stdout_console().print(render_rows(version, real, rows))
    out["agree"] = agree
    if json_out:
        emit_json(out)
    return 0 if agree else 1


@kernel.command("plan-check")
@_scenario_arg
@_kernel_option
@click.option(
    "--remedies",
    default="sync,fsfreeze",
    show_default=True,
    help="Applied in this order to blocks that did not go, each followed by another offline "
    "(sync, fsfreeze; 'none': no second attempts).",
)
@click.option(
    "--sync-fs",
    "sync_fs",
    multiple=True,
    metavar="NAME",
    help="Write this filesystem back (syncfs) after its writes, leaving clean page cache "
    "(repeatable). A scenario with several filesystems gets one DIMM block each.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Draw the plan's call and the kernel's for every DIMM block side by side (PNG, SVG).",
)
@click.option("--force", is_flag=True, help="Replace the --plot file if it exists.")
@_guest_options
def plan_check_cmd(
    ctx: click.Context,
    scenario_file: Path,
    version: str | None,
    remedies: str,
    sync_fs: tuple[str, ...],
    plot_path: Path | None,
    force: bool,
    json_out: bool,
    timeout: float | None,
    offline_timeout: int | None,
    keep: Path | None,
) -> int:
    """Snapshot the guest after SCENARIO's workload, plan every block with that kernel's
    rules, offline every DIMM block (then `sync`, and `fsfreeze`, retrying the ones that failed
    after each), score."""
    from hotremove.realkernel.job import REMEDIES
    from hotremove.realkernel.plancheck import plan_check
    from hotremove.realkernel.plancheck_view import render_plan_check

    settings = begin(ctx)
    chosen = tuple(r.strip() for r in remedies.split(",") if r.strip() not in ("", "none"))
    bad = [r for r in chosen if r not in REMEDIES]
    if bad:
        raise HotremoveError(f"--remedies: unknown remedy {bad[0]!r} (known: sync, fsfreeze)")
    if version is not None:
        check_version(version)
    scn = scenario_mod.load(scenario_file)
    names = [fs.name for fs in scn.filesystem]
    stray = [n for n in sync_fs if n not in names]
    if stray:
        raise HotremoveError(
            f"--sync-fs: no filesystem {stray[0]!r} in the scenario (it has: {', '.join(names)})"
        )
    if plot_path is not None:  # before the guest boots: minutes of work
        check_png(plot_path, label="--plot", force=force, formats=("png", "svg"))
    version = _versions(version or _scenario_version(scn))[0]
    quiet = settings.quiet or json_out
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"hotremove-plancheck-{version}-"))
    try:
        result = plan_check(
            scn,
            version,
            workdir=workdir,
            name=str(scenario_file),
            timeout=timeout,
            offline_seconds=offline_timeout,
            progress=_progress(quiet),
            remedies=chosen,
            synced=tuple(dict.fromkeys(sync_fs)),
        )
    except (GuestError, ArchiveError) as exc:
        return _fail(str(exc))
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
        result.real.console_log = ""
        result.snapshot_path = ""
    if plot_path is not None:
        from hotremove.realkernel.plancheck_view import plot_plan_check

        plot_plan_check(result, plot_path, force=force)
    if json_out:
        out = result.as_dict()
        if plot_path is not None:
            out["plot"] = str(plot_path)
        emit_json(out)
    elif not settings.quiet:
        stdout_console().print(render_plan_check(result))
        if plot_path is not None:
            stdout_console().print(f"picture: {plot_path}")
    return 0 if result.all_right else 1


_SIM_KEYS = (
    "blocks",
    "order",
    "per_block",
    "pages_in_region",
    "migrated",
    "rebound",
    "written_back",
    "writeback_ios",
    "failed",
    "offlined",
    "reason",
    "verify",
)


def main(argv: list[str] | None = None) -> int:
    """Run the group on its own (``python -m hotremove.cli.kernel``), through the CLI's one
    error path."""
    return run_command(kernel, argv, prog_name=f"{PROG} kernel")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
