"""Running one scenario for a command: plugins, progress, Ctrl-C back-off, report."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import structlog
from rich.text import Text

from hotremove import hookimpl, lockdep
from hotremove.cli.display import RunProgress, facts
from hotremove.cli.settings import (
    MODES,
    PROG,
    Settings,
    _begin,
    _emit_json,
    _stderr,
    _stdout,
    log,
)
from hotremove.cost import PRESETS
from hotremove.errors import HotremoveError
from hotremove.plugins import PluginSet, load_plugins
from hotremove.report import Report, _seconds, print_report
from hotremove.runner import check_policy, run_scenario
from hotremove.scenario import Scenario

# --------------------------------------------------------------------------- running


class PageTracer:
    """Added as a plugin at ``--log-level debug``: one log event per migrated page."""

    def __init__(self) -> None:
        self.log = structlog.get_logger("hotremove.trace")

    @hookimpl
    def hotremove_on_page_migrated(
        self, mapping: Any, old_pfn: int, new_pfn: int, strategy: str
    ) -> None:
        a_ops = mapping.a_ops.name if mapping is not None else "anon"
        self.log.debug(
            "page_migrated", a_ops=a_ops, old_pfn=old_pfn, new_pfn=new_pfn, strategy=strategy
        )

    @hookimpl
    def hotremove_on_writeback(self, mapping: Any, pfn: int, requests: int) -> None:
        self.log.debug("page_written_back", a_ops=mapping.a_ops.name, pfn=pfn, requests=requests)


def _plugins(settings: Settings) -> PluginSet:
    extra: list[tuple[str, object]] = []
    if settings.log_level == "debug":
        extra.append(("cli-page-tracer", PageTracer()))
    return load_plugins(extra=extra)


def _check_strategy(scn: Scenario, plugins: PluginSet) -> None:
    check_policy(scn.remove.strategy, plugins)  # before any image is built


def _keep_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HotremoveError(f"--keep-images: cannot create {path}: {exc.strerror}") from None
    return path


@dataclass
class Run:
    report: Report
    wall_seconds: float  # the whole run: images, page cache, offline, verification


class StopFlag:
    """Ctrl-C during the offline asks the engine to back off at the next page boundary (the
    kernel's "signal backoff"): the range is rolled back, verified and reported. Ctrl-C at
    any other moment, or a second one, interrupts at once."""

    def __init__(self) -> None:
        self.armed = False
        self.requested = False
        self.logged = False

    def poll(self) -> bool:
        self.armed = True  # the engine is running: a signal can be handled gracefully
        if self.requested and not self.logged:
            self.logged = True  # logged here, not in the handler: it may interrupt a write
            log.warning("interrupt_requested", action="rolling back at the next page")
        return self.requested

    def disarm(self) -> None:
        self.armed = False

    def handle(self, signum: int, frame: object) -> None:
        if self.armed and not self.requested:
            self.requested = True
            return
        raise KeyboardInterrupt


@contextmanager
def graceful_interrupt() -> Iterator[StopFlag]:
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, flag.handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def execute(
    scn: Scenario,
    *,
    name: str,
    plugins: PluginSet,
    settings: Settings,
    json_out: bool,
    workdir: Path | None = None,
    label: str | None = None,
) -> Run:
    """Build, offline and verify one scenario, with a progress display when wanted."""
    err = _stderr()
    show = settings.progress
    if show is None:
        show = not json_out and not settings.quiet and err.is_terminal
    start = time.perf_counter()
    with graceful_interrupt() as stop:
        if show:
            with RunProgress(err, label or name) as bar:

                def verifying(built: object) -> None:
                    stop.disarm()
                    bar.verifying(built)

                report = run_scenario(
                    scn,
                    name=name,
                    plugins=plugins,
                    workdir=workdir,
                    progress=bar.pages,
                    inspect=verifying,
                    should_stop=stop.poll,
                )
        else:
            report = run_scenario(
                scn,
                name=name,
                plugins=plugins,
                workdir=workdir,
                inspect=lambda _built: stop.disarm(),
                should_stop=stop.poll,
            )
    report.interrupted = stop.requested
    wall = time.perf_counter() - start
    log.info(
        "run_finished",
        scenario=name,
        ok=report.ok,
        offlined=report.offline.offlined,
        wall_seconds=round(wall, 3),
    )
    return Run(report, wall)


def _failure_line(report: Report) -> str:
    off = report.offline
    if not off.offlined:
        why = getattr(off, "reason", "") or f"{len(off.failed)} page(s) could not be moved"
        return f"offline failed (rolled back): {why}"
    if report.verify is not None and not report.verify.ok:
        v = report.verify
        bad = [name for name, f in v.fsck.items() if not f["ok"]]
        what = f"e2fsck not clean on {', '.join(bad)}" if bad else ""
        if v.mismatches:
            what += ("; " if what else "") + f"{len(v.mismatches)} mismatch(es)"
        return f"verification failed: {what or 'see the report'}"
    if off.check_failures:
        return f"{len(off.check_failures)} invariant check(s) failed"
    if report.lock_violations:
        return f"{len(report.lock_violations)} lock violation(s)"
    return "run failed"


def _apply_overrides(
    scn: Scenario,
    *,
    strategy: str | None = None,
    mode: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    faults: tuple[str, ...] = (),
) -> Scenario:
    injected: dict[str, str] = {}
    for fault in faults:
        key, sep, value = fault.partition("=")
        if not sep or not key.strip():
            raise HotremoveError(f"--fault: expected KEY=VALUE, got {fault!r}")
        injected[key.strip()] = value.strip()
    return scn.with_overrides(
        remove={"strategy": strategy, "mode": mode},
        workload={"seed": seed},
        device={"preset": device},
        faults=injected,
    )


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--json", "json_out", is_flag=True, help="Print the report as one JSON object."
        ),
        click.option(
            "--strategy",
            metavar="auto|writeback|NAME",
            help="Override remove.strategy (a variant listed by `hotremove plugins`).",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            help="Override remove.mode (first round's migrate_mode).",
        ),
        click.option("--seed", type=int, help="Override workload.seed."),
        click.option(
            "--device", type=click.Choice(sorted(PRESETS)), help="Override device.preset."
        ),
        click.option(
            "--keep-images",
            type=click.Path(file_okay=False, path_type=Path),
            help="Keep the filesystem images in this directory (created).",
        ),
        click.option(
            "--checks",
            "checks_mode",
            type=click.Choice(["off", "on", "strict"]),
            help="off: no per-step checks; on: per-step checks and lockdep (lock order, "
            "sleeping in atomic context); strict: stop at the first lock violation.",
        ),
        click.option(
            "--fault",
            "faults",
            multiple=True,
            metavar="KEY=VALUE",
            help="Inject a fault (repeatable): writeback_eio=0.05, enomem_after=N, "
            "plugin_raises=NAME; overrides the scenario's [faults].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run_and_show(
    ctx: click.Context,
    scn: Scenario,
    name: str,
    *,
    json_out: bool,
    keep_images: Path | None,
    checks_mode: str | None = None,
    header: str | None = None,
    footer: str | None = None,
) -> int:
    """``run`` and ``demo``: one run, its report as JSON or tables, its exit status."""
    settings = _begin(ctx)
    if checks_mode is not None:
        scn = scn.with_overrides(remove={"checks": checks_mode != "off"})
    plugins = _plugins(settings)
    _check_strategy(scn, plugins)
    workdir = _keep_dir(keep_images)
    human = not json_out and not settings.quiet
    out = _stdout()
    if human and header:
        out.print(Text(header, style="bold"))
        for topic, text in facts(scn):
            out.print(f"  {topic:<12} {text}")
        out.print()
    try:
        with lockdep.checks(checks_mode or "off"):
            run = execute(
                scn,
                name=name,
                plugins=plugins,
                settings=settings,
                json_out=json_out,
                workdir=workdir,
            )
    except lockdep.LockdepStop as stop:  # --checks strict: the first violation ends the run
        click.echo(stop.violation.details, err=True)
        click.echo(f"{PROG}: stopped at the first lock violation (--checks strict)", err=True)
        return 1
    report = run.report
    if json_out:
        _emit_json(report.as_dict())
    if human:
        print_report(report, out)
        out.print(
            Text(
                f"whole run: {_seconds(run.wall_seconds)} wall, including mke2fs, filling the "
                "page cache and verification" + (f"; images kept in {workdir}" if workdir else ""),
                style="dim",
            )
        )
        if footer:
            out.print(Text(footer, style="dim"))
    elif not report.ok:
        click.echo(f"{PROG}: {_failure_line(report)}", err=True)
    return report.exit_status
