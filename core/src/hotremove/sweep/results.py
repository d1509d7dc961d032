"""The results file: CSV appended one row per finished run, read back for --resume and --list.

Every row ends with its ``format`` (:data:`FORMAT`) and a ``checksum`` of the line before it
(the first 16 hex digits of its SHA-256), so that a damaged file is named and refused, never
read as results; a file without those columns is not one of this format (an older hotremove's,
or another file). The header is checked against the grid's columns.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import os
import stat
from pathlib import Path
from typing import Any, Literal

import structlog

from hotremove.errors import HotremoveError
from hotremove.fileio import FileRefused, read_bytes
from hotremove.sweep.columns import FORMAT, TRAILER_COLUMNS
from hotremove.sweep.rows import _cell

log = structlog.get_logger("hotremove.sweep")

#: What a reader does with a last line without its newline: a truncated file, or the line a
#: kill tore in half. ``--resume`` drops it (its run runs again); anything else refuses it.
Torn = Literal["error", "drop"]
#: the largest results file read back (100,000 runs of a few KiB each fit)
MAX_RESULTS = 2 << 30


class ResultsError(HotremoveError):
    """A results file that cannot be read as one: one line naming it and what is wrong."""


def checksum(body: bytes) -> str:
    """The checksum of a row's line (without its last cell): it catches damage, not forgery."""
    return hashlib.sha256(body).hexdigest()[:16]


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


# --------------------------------------------------------------------------- results file


class ResultsFile:
    """A CSV file of rows, appended one whole line per ``write(2)`` and locked against a second
    sweep writing it at the same time."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._fd: int | None = None

    @staticmethod
    def read(
        path: Path, columns: list[str] | None = None, *, torn: Torn = "error"
    ) -> tuple[list[str] | None, list[dict[str, str]]]:
        """Header and rows, every row's format and checksum verified (and the header against
        ``columns`` when given); anything wrong is a one-line :class:`ResultsError`. No file,
        or an empty one, has no header and no rows."""
        if not path.exists() and not path.is_symlink():
            return None, []
        try:
            data = read_bytes(path, what="results file", limit=MAX_RESULTS)
        except FileRefused as exc:
            raise ResultsError(str(exc)) from None
        lines = data.split(b"\n")
        fragment = lines.pop()  # b"" when the file ends with its newline
        if fragment and torn == "drop":
            log.warning("torn_row_dropped", file=str(path), line=len(lines) + 1)
        elif fragment and not lines:
            raise ResultsError(f"{path}: its header is cut short; --overwrite replaces it")
        elif fragment:
            raise ResultsError(
                f"{path}: line {len(lines) + 1} is cut short (a truncated file, or a sweep "
                "killed while writing it: --resume drops it and runs its run again)"
            )
        if not lines:
            return None, []
        head = _header(path, lines[0], columns)
        rows = [_row(path, n, line, head) for n, line in enumerate(lines[1:], start=2)]
        return head, rows

    def open(self, *, resume: bool, overwrite: bool) -> list[dict[str, str]]:
        """Lock and open for appending; returns the rows already there (``resume``)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise HotremoveError(f"{self.path}: cannot write results: {exc.strerror}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):  # a FIFO, /dev/null, a directory
            raise HotremoveError(
                f"--output: {self.path} exists and is not a regular file: results go to a file"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise HotremoveError(f"{self.path}: cannot write results: {exc.strerror}") from None
        rows: list[dict[str, str]] = []
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise HotremoveError(f"{self.path}: another sweep is writing this file") from None
            # a file without rows (a sweep whose cluster never came up) has nothing to keep;
            # but a one-line file is reused only when that line is a results file's header
            data = b"" if overwrite else self._bytes()
            if data and not data.partition(b"\n")[2]:
                self.read(self.path)  # a one-line file that is not a header is refused
            if data.partition(b"\n")[2]:
                if not resume:
                    raise HotremoveError(
                        f"{self.path}: results file exists "
                        "(--resume continues it, --overwrite replaces it)"
                    )
                _, rows = self.read(self.path, self.columns, torn="drop")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if overwrite or not rows:
            os.ftruncate(fd, 0)
            self._write(_csv_line(self.columns).encode() + b"\n")
            return []
        whole = self._bytes().rfind(b"\n") + 1
        if whole < os.fstat(fd).st_size:  # a line torn by a kill: cut it, the next row starts clean
            os.ftruncate(fd, whole)
        return rows

    def _bytes(self) -> bytes:
        try:
            return read_bytes(self.path, what="results file", limit=MAX_RESULTS)
        except FileRefused as exc:
            raise ResultsError(str(exc)) from None

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def append(self, row: dict[str, Any]) -> None:
        """One row, its format and checksum last, as one ``write(2)``."""
        cells = [_cell(row.get(column)) for column in self.columns[: -len(TRAILER_COLUMNS)]]
        body = _csv_line([*cells, FORMAT]).encode()
        self._write(body + b"," + checksum(body).encode() + b"\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _header(path: Path, line: bytes, columns: list[str] | None) -> list[str]:
    try:
        head = next(csv.reader([line.decode("utf-8", errors="replace")]), [])
    except csv.Error:
        head = []
    if tuple(head[-len(TRAILER_COLUMNS) :]) != TRAILER_COLUMNS:
        raise ResultsError(
            f"{path}: not a {FORMAT} results file (its header has no format and checksum "
            "columns: another file, an older hotremove's, or a damaged header); --overwrite "
            "replaces it"
        )
    if columns is not None and head != columns:
        differ = next(
            (i for i, (a, b) in enumerate(zip(head, columns, strict=False)) if a != b),
            min(len(head), len(columns)),
        )
        found = repr(head[differ]) if differ < len(head) else "nothing"
        wanted = repr(columns[differ]) if differ < len(columns) else "nothing"
        raise ResultsError(
            f"{path}: its columns are not this grid's (column {differ + 1} is {found}, not "
            f"{wanted}: another grid, changed axes, or a damaged header); write to a new file"
        )
    return head


def _row(path: Path, number: int, line: bytes, head: list[str]) -> dict[str, str]:
    body, comma, digest = line.rpartition(b",")
    if not comma or digest != checksum(body).encode():
        raise ResultsError(f"{path}: line {number} is damaged (it fails its checksum)")
    try:
        cells = next(csv.reader([body.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        raise ResultsError(f"{path}: line {number} is not a CSV row") from None
    if len(cells) + 1 != len(head):
        raise ResultsError(
            f"{path}: line {number} has {len(cells) + 1} cells, its header {len(head)}"
        )
    if cells[-1] != FORMAT:
        raise ResultsError(
            f"{path}: line {number} is format {cells[-1]!r}; this hotremove reads {FORMAT}"
        )
    return dict(zip(head, [*cells, digest.decode()], strict=True))
