"""The ``hotremove`` command: demo | run | compare | plugins | scenario.

Contract (DESIGN §7, scripts rely on it):

* ``--json`` prints exactly one JSON object on stdout, at the very end; logs and progress go to
  stderr only.
* Exit status 0 = offlined and verified, 1 = the offline or the verification failed, 2 = bad
  input (one line ``hotremove: error: <message>`` on stderr, never a traceback), 130 = Ctrl-C.
* Logging is configured here and only here (:mod:`hotremove.log`).

Options shared by every command (``--log-level``, ``--log-format``, ``--quiet``,
``--progress/--no-progress``) are accepted before or after the command name.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import click
import structlog
from click.core import ParameterSource
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from hotremove import __version__, hookimpl, lockdep
from hotremove import log as hlog
from hotremove import scenario as scenario_mod
from hotremove.cost import PRESETS
from hotremove.errors import HotremoveError
from hotremove.plugins import PluginSet, load_plugins
from hotremove.report import Report, _seconds, print_report
from hotremove.runner import check_policy, run_scenario
from hotremove.scenario import Scenario

log = structlog.get_logger("hotremove.cli")

PROG = "hotremove"
MODES = ("async", "sync_light", "sync")
_META = "hotremove.settings"
#: The progress bar appears only when a run is still going after this many seconds.
PROGRESS_DELAY = 1.0
#: Width for human output when stdout is not a terminal (rich would default to 80 columns).
PIPE_WIDTH = 120


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Options every command shares, merged from the group and the command."""

    log_level: str = "warning"
    log_format: str = "auto"
    quiet: bool = False
    progress: bool | None = None  # None = automatic


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a shared option given on the command line or through the environment; a value
    typed after the command name wins over one typed before it or set in the environment."""
    if value is None or param.name is None:
        return
    source = ctx.get_parameter_source(param.name)
    if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        return
    settings: dict[str, tuple[Any, bool]] = ctx.meta.setdefault(_META, {})
    explicit = source is ParameterSource.COMMANDLINE
    if explicit or param.name not in settings or not settings[param.name][1]:
        settings[param.name] = (value, explicit)


def shared_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--log-level",
            type=click.Choice(hlog.LEVELS, case_sensitive=False),
            envvar="HOTREMOVE_LOG_LEVEL",
            expose_value=False,
            callback=_remember,
            help="warning (default), info (one event per pass), debug (one per page).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(hlog.FORMATS, case_sensitive=False),
            envvar="HOTREMOVE_LOG_FORMAT",
            expose_value=False,
            callback=_remember,
            help="Logs on stderr: console on a terminal, JSON otherwise (auto).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=_remember,
            help="No human output except errors.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            expose_value=False,
            callback=_remember,
            help="Progress bar on stderr (default: on a terminal, not with --json or --quiet).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(ctx: click.Context) -> Settings:
    stored = {k: v for k, (v, _) in ctx.meta.get(_META, {}).items()}
    return Settings(
        log_level=str(stored.get("log_level", "warning")).lower(),
        log_format=str(stored.get("log_format", "auto")).lower(),
        quiet=bool(stored.get("quiet", False)),
        progress=stored.get("progress"),
    )


def _begin(ctx: click.Context) -> Settings:
    """Every command starts here: merge the shared options and configure logging."""
    settings = _settings(ctx)
    hlog.configure(settings.log_level, settings.log_format)
    return settings


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _emit_json(obj: Any) -> None:
    """The one JSON object of a ``--json`` run (strict JSON: no NaN or Infinity)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- formatting


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:g}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n}B"


def facts(scn: Scenario) -> list[tuple[str, str]]:
    """What a scenario builds and removes, as (topic, text) lines; one line per filesystem."""
    mem, wl, rm = scn.memory, scn.workload, scn.remove
    nr_blocks = mem.size // mem.block_size
    out = [("memory", f"{_size(mem.size)} in {nr_blocks} blocks of {_size(mem.block_size)}")]
    for i, fs in enumerate(scn.filesystem):
        options = [f"data={fs.data_mode}"] if fs.data_mode else []
        options += [o for o in fs.options if not o.startswith("data=")]
        text = f"{fs.name}: {fs.type}, {_size(fs.block_size)} blocks, "
        text += f"{fs.files} files of {_size(fs.file_size)}"
        text += f" ({', '.join(options)})" if options else ""
        out.append(("filesystems" if i == 0 else "", text))
    if not scn.filesystem:
        out.append(("filesystems", "none"))
    if wl.anon:
        out.append(("anon", _size(wl.anon)))
    blocks = ", ".join(str(b) for b in rm.blocks)
    out.append(("remove", f"block(s) {blocks}, mode {rm.mode}, strategy {rm.strategy}"))
    out.append(("device", f"{scn.device.preset}, seed {wl.seed}"))
    return out


def describe(scn: Scenario) -> str:
    """One-line summary of a scenario (``scenario check``)."""
    mem, rm = scn.memory, scn.remove
    types = ", ".join(fs.type for fs in scn.filesystem) or "none"
    files = sum(fs.files for fs in scn.filesystem)
    return (
        f"{_size(mem.size)} memory in blocks of {_size(mem.block_size)}; "
        f"{len(scn.filesystem)} filesystem(s) ({types}), {files} files; "
        f"remove block(s) {', '.join(str(b) for b in rm.blocks)} "
        f"(mode {rm.mode}, strategy {rm.strategy}, device {scn.device.preset})"
    )


# --------------------------------------------------------------------------- progress


class RunProgress:
    """A transient progress display on stderr that appears only if the run is still going
    after ``delay`` seconds: building → migrating pages (a bar) → verifying."""

    def __init__(self, console: Console, label: str, delay: float = PROGRESS_DELAY) -> None:
        self.label = label
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self.task = self.progress.add_task(f"{label}: building (mke2fs, page cache)", total=None)
        self._lock = threading.Lock()
        self._shown = False
        self._closed = False
        self._pending = 0
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True

    def __enter__(self) -> RunProgress:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._shown:
                self.progress.stop()

    def _show(self) -> None:
        with self._lock:
            if not self._closed:
                self.progress.start()
                self._shown = True

    def pages(self, total: int) -> Callable[[int], None]:
        """The runner's ``progress(total)``: returns a cheap per-page ``advance(n)``."""
        self.progress.update(
            self.task, description=f"{self.label}: migrating pages", total=total, completed=0
        )
        step = max(1, total // 200)

        def advance(n: int) -> None:
            self._pending += n
            if self._pending >= step:
                self.progress.advance(self.task, self._pending)
                self._pending = 0

        return advance

    def verifying(self, _built: object) -> None:
        """The runner's ``inspect`` hook: the offline is over, verification starts."""
        self.progress.advance(self.task, self._pending)
        self._pending = 0
        self.progress.update(
            self.task, description=f"{self.label}: verifying (sync, e2fsck, read-back)"
        )


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

    def poll(self) -> bool:
        self.armed = True  # the engine is running: a signal can be handled gracefully
        return self.requested

    def disarm(self) -> None:
        self.armed = False

    def handle(self, signum: int, frame: object) -> None:
        if self.armed and not self.requested:
            self.requested = True
            log.warning("interrupt_requested", action="rolling back at the next page")
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


# --------------------------------------------------------------------------- commands


class _Group(click.Group):
    """The top-level group; commands that live in their own module load on first use."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "bench": ("hotremove.cli_bench", "bench_command"),
        "explore": ("hotremove.cli_explore", "explore"),
        "new-plugin": ("hotremove.newplugin", "new_plugin_command"),
        "plan": ("hotremove.cli_snapshot", "plan_command"),
        "snapshot": ("hotremove.cli_snapshot", "snapshot_command"),
        "sweep": ("hotremove.cli_sweep", "sweep_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    name=PROG,
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@shared_options
def cli() -> None:
    """Simulate Linux memory hot-removal on real ext2/ext3/ext4 images.

    Page-cache pages in the memory blocks being offlined are migrated by rebinding their
    buffer_heads (no I/O) or, where no plugin can, by writing dirty pages back first.

    \b
    Exit status: 0 offlined and verified, 1 offline or verification failed,
    2 bad input, 130 interrupted.
    """


def _builtin(name: str) -> str:
    return resources.files("hotremove").joinpath("scenarios", name).read_text(encoding="utf-8")


def demo_scenario() -> Scenario:
    return scenario_mod.loads(_builtin("demo.toml"), source="demo.toml")


@cli.command()
@run_options
@shared_options
@click.pass_context
def demo(
    ctx: click.Context,
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    seed: int | None,
    device: str | None,
    keep_images: Path | None,
    checks_mode: str | None,
    faults: tuple[str, ...],
) -> int:
    """Run the built-in demo: ext2, ext3 (ordered and journal), ext4 and anonymous pages
    spread over a 512 MiB machine; offline memory blocks 2 and 5.

    See the scenario with `hotremove scenario --demo`.
    """
    scn = _apply_overrides(
        demo_scenario(), strategy=strategy, mode=mode, seed=seed, device=device, faults=faults
    )
    header = "hotremove demo: offline two memory blocks full of page cache from real images"
    return _run_and_show(
        ctx,
        scn,
        "demo",
        json_out=json_out,
        keep_images=keep_images,
        checks_mode=checks_mode,
        header=header,
        footer="rebinding vs forced writeback: "
        "hotremove scenario --demo > demo.toml && hotremove compare demo.toml",
    )


@cli.command()
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
@click.option("--blocks", metavar="N[,N...]", help="With --snapshot: the memory blocks to remove.")
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
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    seed: int | None,
    device: str | None,
    keep_images: Path | None,
    checks_mode: str | None,
    faults: tuple[str, ...],
    snapshot_file: Path | None,
    blocks: str | None,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """Run one scenario: build the machine, offline the blocks, verify, report.

    Command-line options override the scenario file. With --snapshot SNAPSHOT --blocks N the
    machine is rebuilt from real memory blocks of a snapshot instead (what `plan` predicted).
    """
    if snapshot_file is not None:
        if scenario_file is not None:
            raise HotremoveError("give a scenario file or --snapshot, not both")
        return _run_snapshot(
            ctx,
            snapshot_file,
            blocks,
            json_out=json_out,
            strategy=strategy,
            mode=mode,
            device=device,
            keep_images=keep_images,
            fs_type=fs_type,
            fs_options=fs_options,
            flagless=flagless,
        )
    if scenario_file is None:
        raise HotremoveError("missing SCENARIO.toml (or --snapshot SNAPSHOT --blocks N)")
    scn = _apply_overrides(
        scenario_mod.load(scenario_file),
        strategy=strategy,
        mode=mode,
        seed=seed,
        device=device,
        faults=faults,
    )
    return _run_and_show(
        ctx,
        scn,
        scenario_file.stem,
        json_out=json_out,
        keep_images=keep_images,
        checks_mode=checks_mode,
    )


def _parse_blocks(blocks: str | None) -> list[int]:
    if not blocks:
        raise HotremoveError("--blocks: name the snapshot's memory blocks to remove (e.g. 12)")
    try:
        return [int(b) for b in blocks.split(",") if b.strip()]
    except ValueError:
        raise HotremoveError(f"--blocks: not a list of block numbers: {blocks!r}") from None


def _run_snapshot(
    ctx: click.Context,
    snapshot_file: Path,
    blocks: str | None,
    *,
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    device: str | None,
    keep_images: Path | None,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """``run --snapshot``: the measurement a plan's prediction is checked against."""
    from hotremove.plan import load_snapshot, resolve_fs, run_snapshot

    settings = _begin(ctx)
    plugins = _plugins(settings)
    check_policy(strategy or "auto", plugins)
    snap = load_snapshot(snapshot_file)
    report = run_snapshot(
        snap,
        _parse_blocks(blocks),
        plugins=plugins,
        workdir=_keep_dir(keep_images),
        fs=resolve_fs(snap, fs_type, fs_options),
        device=device or "nvme",
        policy=strategy or "auto",
        flagless=flagless,
        mode=mode or "sync",
    )
    if json_out:
        _emit_json(report.as_dict())
    elif not settings.quiet:
        print_report(report, _stdout())
    if not report.ok and not json_out:
        click.echo(f"{PROG}: {_failure_line(report)}", err=True)
    return report.exit_status


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


@cli.command()
@click.argument("scenario_file", metavar="SCENARIO.toml", type=click.Path(path_type=Path))
@click.option("--json", "json_out", is_flag=True, help="Print {auto, writeback, ratios}.")
@click.option("--seed", type=int, help="Override workload.seed (both runs).")
@click.option(
    "--mode", type=click.Choice(["async", "sync_light", "sync"]), help="Override remove.mode."
)
@click.option("--device", type=click.Choice(sorted(PRESETS)), help="Override device.preset.")
@shared_options
@click.pass_context
def compare(
    ctx: click.Context,
    scenario_file: Path,
    json_out: bool,
    seed: int | None,
    mode: str | None,
    device: str | None,
) -> int:
    """Run a scenario twice on identical state (same seed, fresh images): `auto` strategies
    (rebinding where a plugin can) versus forced `writeback`. Ratios are writeback / auto."""
    settings = _begin(ctx)
    base = _apply_overrides(scenario_mod.load(scenario_file), seed=seed, mode=mode, device=device)
    plugins = _plugins(settings)
    name = scenario_file.stem
    runs: dict[str, Run] = {}
    for policy in ("auto", "writeback"):
        scn = base.with_overrides(remove={"strategy": policy})
        runs[policy] = execute(
            scn,
            name=name,
            plugins=plugins,
            settings=settings,
            json_out=json_out,
            label=f"{name} [{policy}]",
        )
    auto, wb = runs["auto"].report.as_dict(), runs["writeback"].report.as_dict()
    ratios = {key: ratio(wb[key], auto[key]) for key in RATIO_KEYS}
    status = max(r.report.exit_status for r in runs.values())
    if json_out:
        _emit_json({"auto": auto, "writeback": wb, "ratios": ratios})
    elif not settings.quiet:
        _print_comparison(_stdout(), name, runs, ratios)
    if status and (json_out or settings.quiet):
        for policy, r in runs.items():
            if not r.report.ok:
                click.echo(f"{PROG}: {policy}: {_failure_line(r.report)}", err=True)
    return status


def _print_comparison(
    out: Console, name: str, runs: dict[str, Run], ratios: dict[str, float | str | None]
) -> None:
    a, w = runs["auto"], runs["writeback"]
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
            _seconds(ad["simulated_seconds"]),
            _seconds(wd["simulated_seconds"]),
            _ratio_text(ratios["simulated_seconds"]),
        ),
        (
            "wall time (offline)",
            _seconds(ad["wall_seconds"]),
            _seconds(wd["wall_seconds"]),
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
    per.add_column("a_ops")
    per.add_column("auto strategy (plugin)")
    per.add_column("auto", justify="right")
    per.add_column("writeback", justify="right")
    for aops in sorted(set(ad["per_aops"]) | set(wd["per_aops"])):
        sa, sw = ad["per_aops"].get(aops, {}), wd["per_aops"].get(aops, {})
        per.add_row(
            aops,
            f"{sa.get('strategy', '?')} ({sa.get('plugin', '?')})",
            str(sa.get("write_requests", 0)),
            str(sw.get("write_requests", 0)),
        )
    out.print(table)
    out.print(per)
    out.print(
        Text(
            "write I/Os: every request of the run, journal commits included; "
            "per a_ops: each page's own writeback.",
            style="dim",
        )
    )


def _verdict(report: Report) -> str:
    if report.verify is None:
        return "not run"
    return "yes" if report.verify.ok else "NO"


@cli.command()
@click.option("--json", "json_out", is_flag=True, help="Print a JSON list.")
@shared_options
@click.pass_context
def plugins(ctx: click.Context, json_out: bool) -> int:
    """Installed plugins: distribution, version, hooks, the a_ops each claims, load errors."""
    settings = _begin(ctx)
    loaded = load_plugins()
    infos = [info.as_dict() for info in loaded.report]
    if json_out:
        _emit_json(infos)
        return 0
    if settings.quiet:
        return 0
    out = _stdout()
    table = Table(title=f"hotremove plugins (entry-point group {PROG!r})")
    for column in ("plugin", "distribution", "filesystems", "a_ops", "hooks (hotremove_*)"):
        table.add_column(column, overflow="fold")
    for info in infos:
        fs = ", ".join(info["fs_types"]) or "—"
        if info["policies"]:
            fs += f"\npolicies: {', '.join(info['policies'])}"
        table.add_row(
            Text(info["name"], style="red" if info["error"] else "bold"),
            f"{info['dist'] or '—'}\n{info['version'] or ''}",
            fs,
            "\n".join(info["aops"]) or "—",
            "\n".join(h.removeprefix("hotremove_") for h in info["hooks"]) or "—",
        )
    out.print(table)
    if not infos:
        out.print("no plugins installed: every run will fail (install hotremove-generic-writeback)")
    for info in infos:
        if info["error"]:
            out.print(Text(f"{info['name']}: not loaded: {info['error']}", style="red"))
    return 0


@cli.group(invoke_without_command=True)
@click.option("--example", is_flag=True, help="Print a commented example scenario (every key).")
@click.option("--demo", "show_demo", is_flag=True, help="Print the demo's scenario.")
@shared_options
@click.pass_context
def scenario(ctx: click.Context, example: bool, show_demo: bool) -> int:
    """Scenario files: print an example (--example) or validate one (check FILE)."""
    if example and show_demo:
        raise click.UsageError("give either --example or --demo", ctx=ctx)
    if ctx.invoked_subcommand is not None:
        if example or show_demo:
            raise click.UsageError(
                f"--{'example' if example else 'demo'} takes no subcommand", ctx=ctx
            )
        return 0
    _begin(ctx)
    if example or show_demo:
        sys.stdout.write(_builtin("example.toml" if example else "demo.toml"))
        return 0
    click.echo(ctx.get_help())
    return 0


@scenario.command()
@click.argument("scenario_file", metavar="FILE", type=click.Path(path_type=Path))
@shared_options
@click.pass_context
def check(ctx: click.Context, scenario_file: Path) -> int:
    """Validate a scenario file: `ok: <summary>` (exit 0) or one error line (exit 2)."""
    settings = _begin(ctx)
    scn = scenario_mod.load(scenario_file)
    if not settings.quiet:
        click.echo(f"ok: {scenario_file}: {describe(scn)}")
    return 0


# --------------------------------------------------------------------------- entry point


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {' '.join(message.split())}", err=True)


@contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise


#: click ≥ 8.2 raises this for a bare group; older versions print the help themselves.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status (never raises for user
    errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with _quiet_broken_pipe():
            try:
                with cli.make_context(PROG, args) as ctx:
                    rv = cli.invoke(ctx)
            except click.exceptions.Exit as exc:
                return exc.exit_code
        return rv if isinstance(rv, int) else 0
    except BrokenPipeError:
        return 141
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as exc:  # bare `hotremove`: help, not an error
        ctx = getattr(exc, "ctx", None)
        click.echo(ctx.get_help() if ctx is not None else str(exc))
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _error(exc.format_message() + hint)
        return 2
    except click.ClickException as exc:
        _error(exc.format_message())
        return 2
    except HotremoveError as exc:
        _error(str(exc))
        return 2


def main() -> None:
    """Console-script entry point (``hotremove``)."""
    sys.exit(run_cli())


__all__ = ["cli", "describe", "main", "ratio", "run_cli"]
