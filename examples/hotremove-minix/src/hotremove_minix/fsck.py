"""Check a minix image with util-linux's ``fsck.minix``, read-only.

Without ``-a`` or ``-r``, ``fsck.minix`` opens the image ``O_RDONLY`` and answers "no" to every
repair question, flagging the error as uncorrected (disk-utils/fsck.minix.c: ``main`` opens
``repair ? O_RDWR : O_RDONLY``; ``ask`` returns 0 and sets ``errors_uncorrected`` when not
repairing; the exit status gets 4 for uncorrected errors, 8 when it cannot check at all). A
v3 super block keeps no clean flag, so the check always runs; ``-f`` says so anyway, ``-v``
adds the counts the summary quotes.

Some findings are printed without touching the exit status (``Zone N: in use, counted=2`` for
a zone two files share, ``The file … has mode …``), so any line that is not one of the
check's ordinary lines counts as a problem too. ``fsck.minix`` does not read data zones:
a damaged data byte is for the reader to notice, against the golden bytes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hotremove.fs.fstype import CheckVerdict

_ORDINARY = re.compile(
    r"^(Forcing filesystem check on .*|-+|\s*\d+ (inodes used \(\d+%\)|zones used \(\d+%\)|"
    r"regular files|directories|character device files|block device files|links|"
    r"symbolic links|files))$"
)
_COUNT = re.compile(r"^\s*(\d+) (regular files|inodes used|zones used)")


def check(fsck: str, image: Path) -> CheckVerdict:
    proc = subprocess.run([fsck, "-fv", str(image)], capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    problems = [line.strip() for line in lines if not _ORDINARY.match(line)]
    if proc.returncode == 0 and not problems:
        counts = {m[2]: m[1] for m in map(_COUNT.match, lines) if m}
        return CheckVerdict(
            True,
            f"fsck.minix -fv: clean ({counts.get('regular files', '?')} regular files, "
            f"{counts.get('inodes used', '?')} inodes and {counts.get('zones used', '?')} "
            "zones used)",
        )
    if not problems:  # it could not check at all: the reason is on stderr
        said = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        problems = said[-1:] or [f"exit status {proc.returncode}"]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return CheckVerdict(False, f"fsck.minix -fv (exit {proc.returncode}): {problems[0]}{more}")
