"""Signals as the command line handles them: SIGINT is Python's ``KeyboardInterrupt``; SIGTERM
raises :class:`Terminated`, a kind of it, so that both unwind the same way — every ``finally``
and ``with`` block runs (temporary files, images and directories are removed, pool workers
stopped) — and the command ends with ``hotremove: interrupted`` and 130, or ``hotremove:
terminated`` and 143 (128 + the signal). Standard library only: :mod:`hotremove.startup`
installs these before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import signal

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


def stopped_line(exc: BaseException) -> str:
    """The one line an interrupted command prints."""
    return f"{PROG}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"


def ending() -> None:
    """The process is exiting after a signal: a second one could only cut that short."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_IGN)


__all__ = ["Terminated", "ending", "exit_status", "install_handlers", "stopped_line"]
