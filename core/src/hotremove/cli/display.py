"""Human output: a scenario's facts and the progress bar of a run."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from hotremove.cli.settings import PROGRESS_DELAY
from hotremove.scenario import Scenario

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
