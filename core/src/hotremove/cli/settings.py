"""Options every command shares, and where output goes (stdout: results; stderr: the rest)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import structlog
from click.core import ParameterSource
from rich.console import Console

from hotremove import log as hlog

log = structlog.get_logger("hotremove.cli")

PROG = "hotremove"
MODES = ("async", "sync_light", "sync")
_META = "hotremove.settings"
#: The progress bar appears only when a run is still going after this many seconds.
PROGRESS_DELAY = 1.0
#: Width for human output when stdout is not a terminal (rich would default to 80 columns).
PIPE_WIDTH = 120


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Options every command shares, merged from the group and the command."""

    log_level: str = "warning"
    log_format: str = "auto"
    quiet: bool = False
    progress: bool | None = None  # None = automatic


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a shared option given on the command line or through the environment; a value
    typed after the command name wins over one typed before it or set in the environment."""
    if value is None or param.name is None:
        return
    source = ctx.get_parameter_source(param.name)
    if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        return
    settings: dict[str, tuple[Any, bool]] = ctx.meta.setdefault(_META, {})
    explicit = source is ParameterSource.COMMANDLINE
    if explicit or param.name not in settings or not settings[param.name][1]:
        settings[param.name] = (value, explicit)


def shared_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--log-level",
            type=click.Choice(hlog.LEVELS, case_sensitive=False),
            envvar="HOTREMOVE_LOG_LEVEL",
            expose_value=False,
            callback=_remember,
            help="warning (default), info (one event per pass), debug (one per page).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(hlog.FORMATS, case_sensitive=False),
            envvar="HOTREMOVE_LOG_FORMAT",
            expose_value=False,
            callback=_remember,
            help="Logs on stderr: console on a terminal, JSON otherwise (auto).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=_remember,
            help="No human output except errors.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            expose_value=False,
            callback=_remember,
            help="Progress bar on stderr (default: on a terminal, not with --json or --quiet).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(ctx: click.Context) -> Settings:
    stored = {k: v for k, (v, _) in ctx.meta.get(_META, {}).items()}
    return Settings(
        log_level=str(stored.get("log_level", "warning")).lower(),
        log_format=str(stored.get("log_format", "auto")).lower(),
        quiet=bool(stored.get("quiet", False)),
        progress=stored.get("progress"),
    )


def _begin(ctx: click.Context) -> Settings:
    """Every command starts here: merge the shared options and configure logging."""
    settings = _settings(ctx)
    hlog.configure(settings.log_level, settings.log_format)
    return settings


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _emit_json(obj: Any) -> None:
    """The one JSON object of a ``--json`` run (strict JSON: no NaN or Infinity)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()
