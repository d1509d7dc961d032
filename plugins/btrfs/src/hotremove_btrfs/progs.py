"""Running btrfs-progs (``mkfs.btrfs``, ``btrfs``): one place that pins the locale (the parsers
read English output), drops the noise every program prints, and turns a failure into one line.

Debian bookworm ships btrfs-progs 6.2; everything here was checked against it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence

from hotremove.errors import ImageError

#: every program the btrfs type runs → the Debian package that provides it
TOOLS: dict[str, str] = {"mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs"}

#: Lines that say nothing about the result: the version banner ("btrfs-progs v6.2") and the
#: NOTE block mkfs.btrfs ≥ 5.15 prints on every run about its changed defaults.
_NOISE = re.compile(
    r"^(btrfs-progs v\S+|NOTE: several default settings.*|this does not affect your deploy.*"
    r"|- DUP for metadata.*|- enabled no-holes.*|- enabled free-space-tree.*)$"
)


def meaningful_lines(text: str) -> list[str]:
    """Non-blank lines without the banner and the defaults notice."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not _NOISE.match(line)]


def run(
    program: str, path: str, args: Sequence[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``path`` (the resolved ``program``) with LC_ALL=C; with ``check`` a non-zero exit is
    a one-line :class:`ImageError` naming the program and its first meaningful line."""
    env = {**os.environ, "LC_ALL": "C"}
    try:
        result = subprocess.run(
            [program, *args],  # argv[0] the bare name: messages say "mkfs.btrfs: …"
            executable=path,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            check=False,
        )
    except OSError as exc:
        raise ImageError(f"{program} could not be run: {exc}") from exc
    if check and result.returncode != 0:
        raise ImageError(f"{program} failed (exit status {result.returncode}): {reason(result)}")
    return result


def reason(result: subprocess.CompletedProcess[str]) -> str:
    """The line that explains a failure: the first ERROR line, else the first line of stderr,
    else of stdout."""
    lines = meaningful_lines(result.stderr) + meaningful_lines(result.stdout)
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no error message"])[0]


def version(path: str) -> str:
    """``mkfs.btrfs --version`` → ``v6.2`` (the image layout depends on it)."""
    out = run("mkfs.btrfs", path, ["--version"]).stdout
    match = re.search(r"btrfs-progs (v\S+)", out)
    return match.group(1) if match else out.strip()
