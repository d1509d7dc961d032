"""Helpers for tests of the ``hotremove`` command line.

* :func:`invoke` runs a command in this process (click's ``CliRunner``): for tests that need
  only its output, exit status and messages;
* :func:`hotremove` and :func:`spawn` run it as a process (``python -m hotremove``): for tests
  about the process itself (signals, the console script, its environment).

Both start from a clean environment: no ``HOTREMOVE_*`` variable and no ``COLUMNS`` of the
caller's, so that a developer's settings never change what a test sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from hotremove.cli import cli

#: the generated-input tests' profile: derandomized (the same examples in every run, in CI
#: and here), no example database, no deadline (a command's first run imports plenty); each
#: test sets its own fixed budget of examples. HYPOTHESIS_PROFILE=hunt explores at random.
settings.register_profile(
    "hotremove",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("hunt", parent=settings.get_profile("hotremove"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hotremove"))


def _inherited() -> list[str]:
    return [k for k in os.environ if k.startswith("HOTREMOVE_") or k == "COLUMNS"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``HOTREMOVE_*`` and ``COLUMNS``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _inherited()}
    env.update(extra or {})
    return env


def _argv(args: tuple[str | Path, ...], code: str | None) -> list[str]:
    head = ["-c", code] if code is not None else ["-m", "hotremove"]
    return [sys.executable, *head, *map(str, args)]


def hotremove(
    *args: str | Path,
    code: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hotremove ARGS`` (or ``python -c CODE ARGS``) to the end, in a clean
    environment plus ``env``."""
    return subprocess.run(
        _argv(args, code),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        check=False,
    )


def spawn(
    *args: str | Path, code: str | None = None, env: Mapping[str, str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``python -m hotremove ARGS`` (or ``python -c CODE ARGS``) with its output piped,
    in a clean environment plus ``env``: for tests that signal it."""
    return subprocess.Popen(
        _argv(args, code),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
        **popen,
    )


def invoke(
    *args: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hotremove ARGS`` in this process, in a clean environment plus ``env``; the result
    reads like a finished process (``returncode``, ``stdout``, ``stderr``)."""
    cleared: dict[str, str | None] = dict.fromkeys(_inherited())
    logging = structlog.get_config()  # the command configures logging: put it back after
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args], env={**cleared, **(env or {})})
    finally:
        structlog.configure(**logging)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(
        ["hotremove", *map(str, args)], result.exit_code, result.stdout, result.stderr
    )


def damaged_copies(
    data: bytes, trials: int = 40, seed: int = 19
) -> Iterator[tuple[int, int, bytes]]:
    """Random corruptions of a file's bytes for the "damaged file" tests, in turn: a flipped
    bit, a cut at a random place, a zeroed range of up to 512 bytes. Yields ``(kind, at,
    damaged)``: kind 0 flip, 1 cut, 2 zeroed; ``at`` where."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for trial in range(trials):
        damaged = bytearray(data)
        kind = trial % 3
        at = int(rng.integers(0, len(data)))
        if kind == 0:
            damaged[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            damaged = damaged[:at]
        else:
            stop = min(len(data), at + int(rng.integers(1, 512)))
            damaged[at:stop] = bytes(stop - at)
        yield kind, at, bytes(damaged)
