"""Running dosfstools and mtools: pinned environment, one-line errors.

mtools reads ``/etc/mtools.conf`` and ``~/.mtoolsrc`` and stamps times in local time; every
call here pins the configuration (``MTOOLSRC=/dev/null``), the time zone (UTC) and the locale,
and skips mtools' geometry check (an image file has none), so equal inputs give equal bytes on
any host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from hotremove.errors import ImageError

#: every mtools/dosfstools call runs with this environment on top of the caller's
PINNED_ENV = {
    "LC_ALL": "C",
    "TZ": "UTC",
    "MTOOLSRC": os.devnull,
    "MTOOLS_SKIP_CHECK": "1",
}


def run(argv: Sequence[str], *, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one program; a failure to start it, or (``check``) a non-zero exit, is an
    :class:`ImageError` naming ``what`` and the program's first complaint."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace",
            env={**os.environ, **PINNED_ENV}, stdin=subprocess.DEVNULL,  # mcopy may ask
        )  # fmt: skip
    except OSError as exc:
        raise ImageError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if check and result.returncode != 0:
        raise ImageError(f"{what}: {first_complaint(result)}")
    return result


def first_complaint(result: subprocess.CompletedProcess[str]) -> str:
    """The first line of a failed run worth showing (not a version banner or usage text)."""
    for line in (result.stderr + "\n" + result.stdout).splitlines():
        line = line.strip()
        if line and not is_banner(line) and not line.startswith("Usage:"):
            return line
    return f"exit status {result.returncode}"


def is_banner(line: str) -> bool:
    """``mkfs.fat 4.2 (2021-01-31)``, ``fsck.fat 4.2 (2021-01-31)``."""
    words = line.split()
    return len(words) == 3 and words[0].endswith(".fat") and words[2].startswith("(")


def version(program: str, flag: str) -> str:
    """The first line of ``program flag`` that names a version (for the image cache key)."""
    result = run([program, flag], what=f"{program} {flag}", check=False)
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if any(ch.isdigit() for ch in line) and ("mtools" in line or is_banner(line)):
            return line.strip()
    return f"{os.path.basename(program)} (version unknown)"
