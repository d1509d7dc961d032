"""Running one scenario for a command: plugins, progress, Ctrl-C back-off, the failure line."""

from __future__ import annotations

import signal
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from hotremove import hookimpl
from hotremove.cli.display import RunProgress
from hotremove.cli.output import stderr_console
from hotremove.cli.settings import Settings, log
from hotremove.errors import HotremoveError
from hotremove.plugins import PluginSet, load_plugins
from hotremove.scenario import Scenario
from hotremove.sim.report import Report, not_clean
from hotremove.sim.runner import run_scenario
from hotremove.workload import default_image_cache
from hotremove.workload.imagecache import check_cache_dir

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


def plugins_for(settings: Settings) -> PluginSet:
    """The installed plugins, and a page tracer at ``--log-level debug``."""
    extra: list[tuple[str, object]] = []
    if settings.log_level == "debug":
        extra.append(("cli-page-tracer", PageTracer()))
    return load_plugins(extra=extra)


def keep_dir(path: Path | None, *, force: bool = False) -> Path | None:
    """``--keep-images``: the directory, created. One that holds files already is refused
    unless ``force``: the run would replace images someone kept."""
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise HotremoveError(f"--keep-images: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        held = next(path.iterdir(), None)
    except OSError as exc:
        raise HotremoveError(f"--keep-images: cannot create {path}: {exc.strerror}") from None
    if held is not None and not force:
        raise HotremoveError(
            f"--keep-images: {path} is not empty (it holds {held.name}); --force replaces "
            "the images in it"
        )
    # --force replaces images, never a FIFO, a device, a directory or a symlink named like one
    odd = next((e for e in sorted(path.iterdir()) if e.suffix == ".img" and _odd(e)), None)
    if odd is not None:
        raise HotremoveError(
            f"--keep-images: {odd} exists and is not a regular file: images are written over "
            "regular files only (even with --force)"
        )
    return path


def _odd(entry: Path) -> bool:
    try:
        return not stat.S_ISREG(entry.lstat().st_mode)
    except FileNotFoundError:
        return False


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
    """Build, offline and verify one scenario, with a progress display when wanted.

    The images come from the image cache (``$HOTREMOVE_CACHE/images``, else
    ``~/.cache/hotremove/images``: made once by each filesystem type's own tools per set of
    filesystem parameters, then shared copy-on-write and never written); with ``workdir``
    (``--keep-images DIR``) they are made afresh in that directory instead."""
    err = stderr_console()
    image_cache = check_cache_dir(default_image_cache()) if workdir is None else None
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
                    image_cache=image_cache,
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
                image_cache=image_cache,
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


def failure_line(report: Report) -> str:
    """Why a run failed, in one line for stderr."""
    off = report.offline
    if not off.offlined:
        why = getattr(off, "reason", "") or f"{len(off.failed)} page(s) could not be moved"
        return f"offline failed (rolled back): {why}"
    if report.verify is not None and not report.verify.ok:
        v = report.verify
        what = not_clean(v.fsck)
        if v.mismatches:
            what += ("; " if what else "") + f"{len(v.mismatches)} mismatch(es)"
        return f"verification failed: {what or 'see the report'}"
    if off.check_failures:
        return f"{len(off.check_failures)} invariant check(s) failed"
    if report.lock_violations:
        return f"{len(report.lock_violations)} lock violation(s)"
    return "run failed"
