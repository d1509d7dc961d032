"""Running xfsprogs (mkfs.xfs, xfs_db, xfs_repair): pinned locale, one-line failures.

Every program runs with ``LC_ALL=C`` and ``TZ=UTC`` (the parsers read English output, and
xfs_db prints timestamps in local time) under a bare ``argv[0]``, so a message reads
``mkfs.xfs: …``, never a path. A failure is one :class:`~hotremove.errors.ImageError` line;
a missing program is the caller's :meth:`FilesystemType.require_tools` (ToolMissing naming
the Debian package).

xfs_db reads its commands from stdin, in one process for any number of files. It prints its
complaints about a command ("bad inode number", "No such file or directory") on stdout and
carries on with the previous object, so every group of commands is preceded by an ``echo``
marker and each group's output is parsed on its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hotremove.errors import ImageError

#: The programs the xfs type runs, and the Debian package that provides them.
TOOLS: Mapping[str, str] = {"mkfs.xfs": "xfsprogs", "xfs_db": "xfsprogs", "xfs_repair": "xfsprogs"}

#: xfsprogs ≥ 5.19 refuses data sections under 300 MB ("Filesystem must be larger than
#: 300MB.", mkfs/xfs_mkfs.c ``validate_supported()``), logs under 64 MB and single-AG
#: filesystems — unless TEST_DIR, TEST_DEV and QA_CHECK_FS are all set, the escape kept for
#: fstests ("Forever", Darrick J. Wong on linux-xfs, Aug 2022). The kernel mounts such
#: filesystems (fstests runs on them every day); the log mkfs then makes is still at least
#: the minimum the kernel's ``xfs_log_mount`` checks.
SMALL_FS_ENV: Mapping[str, str] = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}

_MARK = "@@hotremove"

#: stderr lines that say nothing about the result (repair and db on a regular file).
_NOISE = (
    "Cannot get host filesystem geometry.",
    "Repair may fail if there is a sector size mismatch between",
    "the image and the host filesystem.",
)


def run(
    tools: Mapping[str, str],
    program: str,
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run one xfsprogs ``program`` (its path from ``tools``); with ``check``, a non-zero exit
    is an ImageError carrying the program's first meaningful line."""
    full_env = {**os.environ, "LC_ALL": "C", "TZ": "UTC", **(env or {})}
    try:
        result = subprocess.run(
            [program, *args],
            executable=tools[program],
            input=stdin,
            capture_output=True,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except OSError as exc:
        raise ImageError(f"{program} could not be run: {exc}") from exc
    if check and result.returncode != 0:
        raise ImageError(f"{program} failed (exit status {result.returncode}): {reason(result)}")
    return result


def meaningful_lines(text: str) -> list[str]:
    """Non-blank lines without the noise xfsprogs prints for image files."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and line not in _NOISE]


def reason(result: subprocess.CompletedProcess[bytes]) -> str:
    """The first line that explains a failure: stderr first, then stdout."""
    for stream in (result.stderr, result.stdout):
        lines = meaningful_lines(stream.decode(errors="replace"))
        if lines:
            return lines[0]
    return "no error message"


def xfs_db(
    tools: Mapping[str, str],
    image: Path,
    groups: Sequence[Sequence[str]],
    *,
    expert: bool = False,
) -> list[list[str]]:
    """Run every group of xfs_db commands in one process; each group's output lines.

    Read-only (``-r``) unless ``expert`` (``-x``: ``write`` allowed). An image xfs_db cannot
    open at all is an ImageError; what one command printed is the caller's to judge.
    """
    script = "".join(
        f"echo {_MARK} {i}\n" + "".join(f"{command}\n" for command in group)
        for i, group in enumerate(groups)
    )
    mode = "-x" if expert else "-r"
    result = run(tools, "xfs_db", ["-f", mode, str(image)], stdin=script.encode())
    outputs: list[list[str]] = []
    for line in result.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == _MARK and words[1] == str(len(outputs)):
            outputs.append([])
        elif outputs:
            outputs[-1].append(line.rstrip())
    if len(outputs) != len(groups):
        raise ImageError(f"xfs_db ran {len(outputs)} of {len(groups)} command groups on {image}")
    return outputs


def version(tools: Mapping[str, str]) -> str:
    """``mkfs.xfs -V``: "mkfs.xfs version 6.1.0" → "6.1.0"."""
    out = run(tools, "mkfs.xfs", ["-V"]).stdout.decode(errors="replace").split()
    return out[-1] if out else "unknown"
