"""Human output: a scenario's facts and the progress bars (of a run, of a sweep)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hotremove.cli.output import stderr_console
from hotremove.kernels import get_kernel
from hotremove.scenario import Scenario
from hotremove.units import format_size

#: The progress bar of a run appears only when the run is still going after this many seconds.
PROGRESS_DELAY = 1.0

# --------------------------------------------------------------------------- scenario


def facts(scn: Scenario) -> list[tuple[str, str]]:
    """What a scenario builds and removes, as (topic, text) lines; one line per filesystem."""
    mem, wl, rm = scn.memory, scn.workload, scn.remove
    nr_blocks = mem.size // mem.block_size
    out = [
        (
            "memory",
            f"{format_size(mem.size)} in {nr_blocks} blocks of {format_size(mem.block_size)}",
        )
    ]
    for i, fs in enumerate(scn.filesystem):
        options = [f"data={fs.data_mode}"] if fs.data_mode else []
        options += [o for o in fs.options if not o.startswith("data=")]
        text = f"{fs.name}: {fs.type}, {format_size(fs.block_size)} blocks, "
        text += f"{fs.files} files of {format_size(fs.file_size)}"
        text += f" ({', '.join(options)})" if options else ""
        out.append(("filesystems" if i == 0 else "", text))
    if not scn.filesystem:
        out.append(("filesystems", "none"))
    if wl.anon:
        out.append(("anon", format_size(wl.anon)))
    blocks = ", ".join(str(b) for b in rm.blocks)
    out.append(("remove", f"block(s) {blocks}, mode {rm.mode}, strategy {rm.strategy}"))
    out.append(("device", f"{scn.device.preset}, seed {wl.seed}"))
    out.append(("kernel", get_kernel(scn.kernel.version).title))
    return out


def describe(scn: Scenario) -> str:
    """One-line summary of a scenario (``scenario check``)."""
    mem, rm = scn.memory, scn.remove
    types = ", ".join(fs.type for fs in scn.filesystem) or "none"
    files = sum(fs.files for fs in scn.filesystem)
    return (
        f"{format_size(mem.size)} memory in blocks of {format_size(mem.block_size)}; "
        f"{len(scn.filesystem)} filesystem(s) ({types}), {files} files; "
        f"remove block(s) {', '.join(str(b) for b in rm.blocks)} "
        f"(mode {rm.mode}, strategy {rm.strategy}, device {scn.device.preset}, "
        f"kernel {scn.kernel.version})"
    )


# --------------------------------------------------------------------------- progress


def progress_bar(
    console: Console | None = None,
    *,
    tally: bool = False,
    transient: bool = False,
    disable: bool = False,
    redirect_stderr: bool = False,
) -> Progress:
    """The command line's progress bar on stderr: spinner, description, bar, done/total,
    elapsed time; a sweep's also shows its tally of outcomes and the time remaining."""
    columns: list[ProgressColumn | str] = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if tally:
        columns.append(TextColumn("{task.fields[tally]}"))
    columns.append(TimeElapsedColumn())
    if tally:
        columns.append(TimeRemainingColumn())
    return Progress(
        *columns,
        console=console or stderr_console(),
        transient=transient,
        disable=disable,
        redirect_stdout=False,
        redirect_stderr=redirect_stderr,
    )


@contextmanager
def steps(title: str, total: int, *, show: bool) -> Iterator[Callable[[str], None]]:
    """Progress over a command's few long steps (the runs of ``compare``): yields
    ``step(description)``, called as each step starts ("compare 2/3: kernel 6.1"). On a
    terminal a bar on stderr; when ``--progress`` forces it elsewhere (a CI log, a file) also
    one line per step, since a bar is drawn there only once, at the end."""
    bar = progress_bar(disable=not show, redirect_stderr=True)
    task = bar.add_task(title, total=total)
    started = [0]

    def step(description: str) -> None:
        bar.update(task, completed=started[0])
        started[0] += 1
        text = f"{title} {started[0]}/{total}: {description}"
        bar.update(task, description=text)
        if show and not bar.console.is_terminal:
            bar.console.print(text, soft_wrap=True)

    with bar:
        yield step
        bar.update(task, completed=total, description=title)


class RunProgress:
    """A transient progress display on stderr that appears only if the run is still going
    after ``delay`` seconds: building → migrating pages (a bar) → verifying."""

    def __init__(self, console: Console, label: str, delay: float = PROGRESS_DELAY) -> None:
        self.label = label
        self.progress = progress_bar(console, transient=True, redirect_stderr=True)
        self.task = self.progress.add_task(f"{label}: building (images, page cache)", total=None)
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
            self.task, description=f"{self.label}: verifying (sync, checkers, read-back)"
        )
