"""The ``hotremove`` command's first code: signals and output streams set up before anything
heavy is imported, so that Ctrl-C or SIGTERM at any moment — start-up included — ends the
command with one line and its exit status, never a traceback (docs/cli.md,
:mod:`hotremove.signals`). An output encoding that cannot spell a character
(``PYTHONIOENCODING=ascii``) gets ``?`` for it instead of a ``UnicodeEncodeError``.

Only the standard library is imported before the handlers are in place; the command line
itself is imported inside the guard.
"""

from __future__ import annotations

from hotremove.signals import ending, exit_status, install_handlers, stopped_line

install_handlers()  # first: the imports below take a while, Ctrl-C must be ours meanwhile

import contextlib  # noqa: E402
import sys  # noqa: E402


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
        install_handlers()  # again: ``main`` may be called without this module's import
        _forgiving_streams()
        from hotremove.cli.commands import run_cli

        status = run_cli()
    except KeyboardInterrupt as exc:  # during start-up, or past the command's own handler
        status = _stopped(exc)
    if status in (130, 143):
        ending()
    sys.exit(status)


__all__ = ["main"]
