"""The ``hotremove`` command's first code: signals and output streams set up before anything
heavy is imported, so that Ctrl-C or SIGTERM at any moment — start-up included — ends the
command with one line and its exit status, never a traceback (docs/cli.md).

* SIGINT is Python's ``KeyboardInterrupt``; SIGTERM raises :class:`Terminated`, a kind of
  it, so that both unwind the same way: every ``finally`` and ``with`` block runs (temporary
  files, images and directories are removed, pool workers stopped) and the command ends with
  ``hotremove: interrupted`` and 130, or ``hotremove: terminated`` and 143 (128 + the signal).
* An output encoding that cannot spell a character (``PYTHONIOENCODING=ascii``) gets ``?``
  for it instead of a ``UnicodeEncodeError``.

Only the standard library is imported here; the command line itself is imported inside the
guard.
"""

from __future__ import annotations

import contextlib
import signal
import sys

PROG = "hotremove"


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C, then exit 143."""


def _terminate(signum: int, frame: object) -> None:
    # one unwinding: a second SIGTERM must not cut the clean-up of the first short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def install_handlers() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread (SIGINT already raises
    ``KeyboardInterrupt``)."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_status(exc: BaseException) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM: 128 + the signal's number, as a shell says."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _ending() -> None:
    """The process is exiting after a signal: a second one could only cut that short."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_IGN)


def stopped_line(exc: BaseException) -> str:
    """The one line an interrupted command prints."""
    return f"{PROG}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"


def _forgiving_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                reconfigure(errors="replace")


def _stopped(exc: BaseException) -> int:
    with contextlib.suppress(OSError, ValueError, KeyboardInterrupt):
        print(stopped_line(exc), file=sys.stderr, flush=True)
    return exit_status(exc)


def main() -> None:
    """Console-script entry point (``hotremove``, ``python -m hotremove``)."""
    try:
        install_handlers()
        _forgiving_streams()
        from hotremove.cli.commands import run_cli

        status = run_cli()
    except KeyboardInterrupt as exc:  # during start-up, or past the command's own handler
        status = _stopped(exc)
    if status in (130, 143):
        _ending()
    sys.exit(status)


__all__ = ["Terminated", "exit_status", "install_handlers", "main", "stopped_line"]
