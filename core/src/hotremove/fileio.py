"""The one way hotremove reads a file a user names, and the one way it writes one.

Reading (:func:`read_bytes`, :func:`read_text`): a regular file only — a FIFO would block
for ever, ``/dev/zero`` never ends, a directory is no file — opened without blocking
(``O_NONBLOCK``), checked with ``fstat`` before one byte is read, and never more than
``limit`` bytes: what does not fit is refused, not read until memory runs out.

Writing (:func:`replace_file`): an output path that exists and is not a regular file (a
character device such as ``/dev/null``, a FIFO, a directory, a socket) is refused; an
existing regular file is replaced only when the user said so (``--force``); the new content
goes to a temporary file in the same directory, which is renamed over the path only once it
is complete and is removed whatever happens before (an error, Ctrl-C, SIGTERM).

Every refusal is one line naming the option or the file (:class:`FileRefused`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from hotremove.errors import HotremoveError

#: a scenario, a grid or another small text file
TEXT_LIMIT = 1 << 20


class FileRefused(HotremoveError):
    """A file hotremove was asked to read or write is not one it may (one line, naming it)."""


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    from hotremove.units import format_size

    return format_size(n, sep=" ")


def _where(label: str | None, path: Path) -> str:
    return f"{label}: {path}" if label else str(path)


def _open_checked(path: Path, *, what: str, limit: int, label: str | None) -> int:
    """An open descriptor of regular file ``path`` no larger than ``limit``."""
    where = _where(label, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileRefused(f"{where}: no such {what}") from None
    except IsADirectoryError:
        raise FileRefused(f"{where}: is a directory, not a {what}") from None
    except OSError as exc:
        raise FileRefused(f"{where}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{where}: is {_kind(st.st_mode)}, not a {what}")
        if st.st_size > limit:
            raise FileRefused(
                f"{where}: {_size(st.st_size)} is more than a {what} may be ({_size(limit)})"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path | str, *, what: str, limit: int, label: str | None = None) -> BinaryIO:
    """Regular file ``path`` (no larger than ``limit``) open for reading, for a reader that
    takes a file object and reads only what it needs (a zip archive)."""
    fd = _open_checked(Path(path), what=what, limit=limit, label=label)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: Path | str, *, what: str, limit: int, label: str | None = None) -> bytes:
    """The whole of regular file ``path``, at most ``limit`` bytes; anything else is a
    one-line :class:`FileRefused` (``what`` names the file's role: "scenario file")."""
    path = Path(path)
    where = _where(label, path)
    fd = _open_checked(path, what=what, limit=limit, label=label)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never past the limit
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileRefused(f"{where}: grew past what a {what} may be ({_size(limit)})")
        return b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"{where}: cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(
    path: Path | str, *, what: str, limit: int = TEXT_LIMIT, label: str | None = None
) -> str:
    """:func:`read_bytes`, decoded as UTF-8 (a file that is not is refused in one line)."""
    data = read_bytes(path, what=what, limit=limit, label=label)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _where(label, Path(path))
        raise FileRefused(f"{where}: not UTF-8 text (byte {exc.start}): not a {what}") from None


def check_output(path: Path | str, *, label: str, force: bool, what: str = "file") -> bool:
    """Whether ``path`` may be written: refuses (one line) a path that exists and is not a
    regular file, a regular file unless ``force``, and a path whose directory does not
    exist. Returns whether a file is there (and will be replaced)."""
    path = Path(path)
    try:
        st = path.stat()  # through a symlink: a link to /dev/null is a device too
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise FileRefused(f"{label}: {path}: {exc.strerror or exc}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(
                f"{label}: {path} exists and is not a regular file ({_kind(st.st_mode)}): "
                "hotremove writes only regular files"
            )
        if not force:
            raise FileRefused(f"{label}: {path} exists (--force replaces it)")
        return True
    parent = path.parent
    if not parent.is_dir():
        raise FileRefused(f"{label}: cannot write {path}: no such directory {parent}")
    if path.is_symlink():  # a dangling link: the rename would replace the link, not follow it
        raise FileRefused(f"{label}: {path} is a dangling symbolic link")
    return False


@contextlib.contextmanager
def replace_file(
    path: Path | str, *, label: str, force: bool, what: str = "file", mode: int = 0o644
) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write; once the block ends without an
    exception it is renamed over ``path`` (checked first with :func:`check_output`). The
    temporary file never outlives the block."""
    path = Path(path)
    check_output(path, label=label, force=force, what=what)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FileRefused(f"{label}: cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, mode)
        # checked again at the last moment: something may have appeared at path meanwhile
        check_output(path, label=label, force=True, what=what)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FileRefused(f"{label}: cannot write {path}: no space left") from None
        raise FileRefused(f"{label}: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_png(
    path: Path | str, *, label: str, force: bool, formats: tuple[str, ...] = ("png",)
) -> str:
    """A figure's path: its suffix names one of ``formats`` (the figure is written as what
    its name says) and it may be written (:func:`check_output`) — checked before the work
    that draws it. Returns the format."""
    path = Path(path)
    fmt = path.suffix.lower().removeprefix(".")
    if fmt not in formats:
        names = " or ".join(f".{f}" for f in formats)
        raise FileRefused(f"{label}: {path}: name a {names} file (the figure's format)")
    check_output(path, label=label, force=force)
    return fmt


def save_figure(
    fig: Any,
    path: Path | str,
    *,
    label: str = "--plot",
    force: bool = True,
    formats: tuple[str, ...] = ("png",),
    **savefig: Any,
) -> Path:
    """``fig.savefig`` at ``path``, in the format its suffix names, through
    :func:`replace_file`."""
    fmt = check_png(path, label=label, force=force, formats=formats)
    with replace_file(path, label=label, force=force, what="figure") as tmp:
        try:
            fig.savefig(tmp, format=fmt, **savefig)
        except ValueError as exc:
            raise FileRefused(f"{label}: cannot draw {path}: {exc}") from None
    return Path(path)


__all__ = [
    "TEXT_LIMIT",
    "FileRefused",
    "check_output",
    "check_png",
    "open_regular",
    "read_bytes",
    "read_text",
    "replace_file",
    "save_figure",
]
