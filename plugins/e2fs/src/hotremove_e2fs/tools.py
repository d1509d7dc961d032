"""Finding and running e2fsprogs programs (mke2fs, debugfs, e2fsck, tune2fs).

Everything in :mod:`hotremove_e2fs` goes through :func:`run_tool`, so the locale is pinned
(the parsers below read English output) and every failure becomes a one-line
:class:`ImageError` instead of a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hotremove.errors import ImageError, ToolMissing


class E2fsprogsMissing(ToolMissing):
    """A program from e2fsprogs (mke2fs, e2fsck, debugfs, tune2fs) is not installed."""


#: Directories searched after PATH: e2fsprogs lives in sbin, which users' PATH often lacks.
_SBIN_DIRS = ("/sbin", "/usr/sbin")

#: The version banner every e2fsprogs program prints first, e.g. "debugfs 1.47.0 (5-Feb-2023)".
_BANNER = re.compile(r"^\S+ \d+\.\d+(\.\d+)*\S* \(.*\)$")

#: stderr lines from debugfs that mean the image itself could not be opened.
_OPEN_FAILURES = ("while trying to open", "Filesystem not open")


def e2fsprogs_binary(name: str) -> str:
    """Absolute path of an e2fsprogs program, so a missing install is one clear line, not ENOENT."""
    found = shutil.which(name)
    if found is None:
        for directory in _SBIN_DIRS:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                found = candidate
                break
    if found is None:
        raise E2fsprogsMissing(
            f"e2fsprogs is not installed ({name} not found): apt-get install e2fsprogs"
        )
    return os.path.abspath(found)


def meaningful_lines(text: str) -> list[str]:
    """Non-blank output lines without the version banner, which says nothing about the result."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not _BANNER.match(line)]


def run_tool(
    name: str,
    args: list[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run one e2fsprogs program with LC_ALL=C; with ``check``, a failure is a one-line ImageError.

    ``env`` adds variables (e.g. E2FSPROGS_FAKE_TIME) on top of the inherited environment.
    """
    full_env = {**os.environ, "LC_ALL": "C", "DEBUGFS_PAGER": "__none__", **(env or {})}
    try:
        result = subprocess.run(
            [
                name,
                *args,
            ],  # a bare argv[0] keeps messages "mke2fs: ...", not "/usr/sbin/mke2fs: ..."
            executable=e2fsprogs_binary(name),
            input=input,
            capture_output=True,
            env=full_env,
            check=False,
        )
    except OSError as exc:
        raise ImageError(f"{name} could not be run: {exc}") from exc
    if check and result.returncode != 0:
        raise ImageError(f"{name} failed (exit status {result.returncode}): {_reason(result)}")
    return result


def _reason(result: subprocess.CompletedProcess[bytes]) -> str:
    """The first line that explains a failure: stderr first, stdout if stderr said nothing."""
    for stream in (result.stderr, result.stdout):
        lines = meaningful_lines(stream.decode(errors="replace"))
        if lines:
            return lines[0]
    return "no error message"


def fs_path(path: str) -> str:
    """A relative path as a quoted absolute debugfs argument; refuse what debugfs can't parse."""
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ImageError(f"not a file path inside the filesystem: {path!r}")
    if any(char in path for char in '"\n\r\0'):
        raise ImageError(f"file path has a character debugfs cannot take: {path!r}")
    return '"/' + "/".join(parts) + '"'


@dataclass(frozen=True)
class DebugfsRun:
    """What one debugfs script printed: each command's stdout, and stderr's meaningful lines."""

    outputs: list[str]
    errors: list[str]


def run_debugfs(
    image: Path,
    commands: Sequence[str],
    *,
    writable: bool = False,
    env: Mapping[str, str] | None = None,
) -> DebugfsRun:
    """Run many debugfs commands in one process (one process per file would be far too slow).

    debugfs exits 0 even when commands fail, so stderr is returned for the caller to judge; an
    image debugfs cannot open at all is an ImageError here.
    """
    with tempfile.TemporaryDirectory(prefix="hotremove-debugfs-") as tmp:
        script = Path(tmp) / "commands"
        script.write_text("".join(f"{command}\n" for command in commands))
        args = ["-w"] if writable else []
        result = run_tool("debugfs", [*args, "-f", str(script), str(image)], env=env)
    errors = meaningful_lines(result.stderr.decode(errors="replace"))
    failures = [line for line in errors if any(sign in line for sign in _OPEN_FAILURES)]
    if failures:
        explained = "while trying to open" in failures[0]
        raise ImageError(
            failures[0] if explained else f"debugfs cannot open {image}: {failures[0]}"
        )
    return DebugfsRun(_split_outputs(result.stdout.decode(errors="replace"), commands), errors)


def _split_outputs(stdout: str, commands: Sequence[str]) -> list[str]:
    """Cut stdout at debugfs's "debugfs: <command>" echoes, matching the commands in order."""
    outputs: list[list[str]] = []
    for line in stdout.splitlines():
        if len(outputs) < len(commands) and line == f"debugfs: {commands[len(outputs)]}":
            outputs.append([])
        elif outputs:
            outputs[-1].append(line)
    if len(outputs) != len(commands):
        raise ImageError(f"debugfs ran {len(outputs)} of {len(commands)} commands")
    return ["\n".join(lines) for lines in outputs]
