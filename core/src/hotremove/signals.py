"""Signals as the command line handles them: SIGINT is Python's ``KeyboardInterrupt``; SIGTERM
raises :class:`Terminated`, a kind of it, so that both unwind the same way — every ``finally``
and ``with`` block runs (temporary files, images and directories are removed, pool workers
stopped) — and the command ends with ``hotremove: interrupted`` and 130, or ``hotremove:
terminated`` and 143 (128 + the signal).

Built on ``_signal``, the C module under :mod:`signal` (which imports :mod:`enum`, a few
milliseconds more of start-up during which a Ctrl-C would still be Python's): the
command's first line installs these (:mod:`hotremove.startup`).
"""

from __future__ import annotations

import _signal

PROG = "hotremove"
SIGINT, SIGTERM = _signal.SIGINT, _signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C, then exit 143."""


def _terminate(signum: int, frame: object) -> None:
    # one unwinding: a second SIGTERM must not cut the clean-up of the first short
    _signal.signal(SIGTERM, _signal.SIG_IGN)
    raise Terminated


def install_handlers() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread, SIGINT ``KeyboardInterrupt``
    (also when the shell started the command with SIGINT ignored: a background job)."""
    _signal.signal(SIGTERM, _terminate)
    _signal.signal(SIGINT, _signal.default_int_handler)


def exit_status(exc: BaseException) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM: 128 + the signal's number, as a shell says."""
    return 128 + (SIGTERM if isinstance(exc, Terminated) else SIGINT)


def stopped_line(exc: BaseException) -> str:
    """The one line an interrupted command prints."""
    return f"{PROG}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"


def ending() -> None:
    """The process is exiting after a signal: a second one could only cut that short."""
    for signum in (SIGINT, SIGTERM):
        try:  # noqa: SIM105 (contextlib is one import more at start-up)
            _signal.signal(signum, _signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            pass


__all__ = ["Terminated", "ending", "exit_status", "install_handlers", "stopped_line"]
