"""The results file: CSV appended one row per finished run, read back for --resume."""

from __future__ import annotations

import csv
import fcntl
import io
import os
from pathlib import Path
from typing import Any

import structlog

from hotremove.errors import HotremoveError
from hotremove.sweep.rows import _cell

log = structlog.get_logger("hotremove.sweep")

# --------------------------------------------------------------------------- results file


class ResultsFile:
    """A CSV file of rows, appended one whole line per ``write(2)`` and locked against a second
    sweep writing it at the same time."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._fd: int | None = None

    @staticmethod
    def read(path: Path) -> tuple[list[str] | None, list[dict[str, str]]]:
        """Header and rows; a torn last line (no newline) is ignored."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            raise HotremoveError(f"{path}: cannot read results: {exc.strerror}") from None
        text = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
        reader = csv.reader(io.StringIO(text))
        rows = list(reader)
        if not rows:
            return None, []
        head, body = rows[0], rows[1:]
        return head, [dict(zip(head, r, strict=False)) for r in body if len(r) == len(head)]

    def open(self, *, resume: bool, overwrite: bool) -> list[dict[str, str]]:
        """Lock and open for appending; returns the rows already there (``resume``)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise HotremoveError(f"{self.path}: cannot write results: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise HotremoveError(f"{self.path}: another sweep is writing this file") from None
            head, rows = self.read(self.path)
            # a file without rows (a sweep whose cluster never came up) has nothing to keep
            if rows and not (resume or overwrite):
                raise HotremoveError(
                    f"{self.path}: results file exists "
                    "(--resume continues it, --overwrite replaces it)"
                )
            if rows and not overwrite and head != self.columns:
                raise HotremoveError(
                    f"{self.path}: its columns are not this grid's (another grid, or axes "
                    "changed); write to a new file"
                )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if overwrite or not rows:
            os.ftruncate(fd, 0)
            self._write(self.columns)
            return []
        whole = self.path.read_bytes().rfind(b"\n") + 1
        if whole < os.fstat(fd).st_size:  # a line torn by a kill: cut it, the next row starts clean
            os.ftruncate(fd, whole)
        return rows

    def _write(self, cells: list[str]) -> None:
        assert self._fd is not None
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        data = buf.getvalue().encode()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def append(self, row: dict[str, Any]) -> None:
        self._write([_cell(row.get(column)) for column in self.columns])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
