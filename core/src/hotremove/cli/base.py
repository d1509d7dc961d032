"""What every ``hotremove`` command is: its program name, its click classes and the one error
path (the contract in docs/cli.md).

* A user's mistake (:class:`~hotremove.errors.HotremoveError`, a click usage error) is one line
  ``hotremove: error: <message>`` on stderr and exit status 2, never a traceback;
* Ctrl-C is ``hotremove: interrupted`` and exit status 130, SIGTERM ``hotremove: terminated``
  and 143 (:mod:`hotremove.signals`); a reader that goes away (``| head``) ends the command
  quietly;
* a command's return value is its exit status.

:func:`run_command` is that path. The console script runs the group through it
(:func:`hotremove.cli.run_cli`), and so does every command run on its own (``main()``, click's
``CliRunner``): :class:`Command` and :class:`Group` route click's stand-alone ``main`` to it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from hotremove.errors import HotremoveError
from hotremove.signals import exit_status, stopped_line

PROG = "hotremove"
#: click settings every command shares (``-h``, and help text no wider than 100 columns).
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: click ≥ 8.2 raises this for a bare group; older versions print the help themselves.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def error(message: str) -> None:
    """The one-line error of the CLI's contract (whitespace, newlines included, folded)."""
    click.echo(f"{PROG}: error: {' '.join(message.split())}", err=True)


@contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise


def run_command(
    command: click.Command, argv: Sequence[str] | None, prog_name: str = PROG, **extra: Any
) -> int:
    """Parse ``argv``, run ``command`` and return its exit status; user errors, Ctrl-C and a
    closed pipe become the contract's message and status instead of an exception."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with _quiet_broken_pipe():
            try:
                with command.make_context(prog_name, args, **extra) as ctx:
                    rv = command.invoke(ctx)
            except click.exceptions.Exit as exc:
                return exc.exit_code
        return rv if isinstance(rv, int) else 0
    except BrokenPipeError:
        return 141
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (startup.Terminated)
        click.echo(stopped_line(exc), err=True)
        return exit_status(exc)
    except click.exceptions.Abort:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as exc:  # bare `hotremove`: help, not an error
        ctx = getattr(exc, "ctx", None)
        click.echo(ctx.get_help() if ctx is not None else str(exc))
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        error(exc.format_message() + hint)
        return 2
    except click.ClickException as exc:
        error(exc.format_message())
        return 2
    except HotremoveError as exc:
        error(str(exc))
        return 2
    except ValueError as exc:
        if "null byte" not in str(exc):
            raise
        error("a path contains a NUL byte")  # os.* refuse it before any system call
        return 2
    except OSError as exc:  # a path the user gave that cannot be made or read: bad input
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}")
        return 2


class _Contract:
    """click's stand-alone ``main`` through :func:`run_command` (``standalone_mode=False``
    keeps click's behaviour: the return value, exceptions raised)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(  # type: ignore[misc]
                args, prog_name, complete_var, standalone_mode=False, **extra
            )
        sys.exit(run_command(self, args, prog_name or PROG, **extra))  # type: ignore[arg-type]


class Command(_Contract, click.Command):
    """A ``hotremove`` command (``@click.command(cls=Command)``)."""


class Group(_Contract, click.Group):
    """A ``hotremove`` group; its commands and subgroups are :class:`Command` and ``Group``."""

    command_class = Command


Group.group_class = Group


__all__ = ["CONTEXT_SETTINGS", "PROG", "Command", "Group", "error", "run_command"]
