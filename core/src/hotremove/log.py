"""structlog configuration for the command line (and only for it).

Library modules never configure logging: they call ``structlog.get_logger("hotremove.x")`` and
log snake_case events (``pass_finished``, ``plugin_load_failed``); the runner binds run-wide
context (``scenario``, ``seed``) through :mod:`structlog.contextvars`. The CLI calls
:func:`configure` once per invocation, before anything logs:

* every line goes to **stderr**, so ``--json`` output on stdout stays one clean object;
* ``console`` rendering (coloured when stderr is a terminal) or one ``json`` object per line;
  ``auto`` picks console on a TTY, JSON otherwise;
* levels: ``warning`` (default: human output stays clean), ``info`` (one event per pass and
  per phase), ``debug`` (per page, through a tracing plugin the CLI adds).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "console", "json")
Format = Literal["auto", "console", "json"]


class StderrLogger:
    """Writes each rendered line to ``sys.stderr`` *as it is at call time*, so a live progress
    display that redirects stderr can print log lines above its bar."""

    def __init__(self, name: str | None = None, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream

    def msg(self, message: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class StderrLoggerFactory:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> StderrLogger:
        return StderrLogger(str(args[0]) if args else None, self._stream)


def _add_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


_FIRST = ("timestamp", "level", "logger", "event")


def _event_first(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """JSON lines read best with the fixed keys first, then the event's own."""
    head = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    return {**head, **event_dict}


def resolve_format(fmt: str, stream: TextIO | None = None) -> Literal["console", "json"]:
    """``auto`` → ``console`` when the log stream is a terminal, else ``json``."""
    if fmt == "console" or fmt == "json":
        return fmt
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure(
    level: str = "warning", fmt: str = "auto", *, stream: TextIO | None = None
) -> Literal["console", "json"]:
    """Configure structlog for one CLI invocation; returns the format actually used.

    ``stream`` defaults to whatever ``sys.stderr`` is when a line is written.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (choose from {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (choose from {', '.join(FORMATS)})")
    resolved = resolve_format(fmt, stream)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if resolved == "json":
        renderer: list[Processor] = [
            structlog.processors.dict_tracebacks,
            _event_first,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        target = stream or sys.stderr
        colors = bool(getattr(target, "isatty", lambda: False)())
        renderer = [structlog.dev.ConsoleRenderer(colors=colors)]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=StderrLoggerFactory(stream),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    return resolved


__all__ = ["FORMATS", "LEVELS", "configure", "resolve_format"]
