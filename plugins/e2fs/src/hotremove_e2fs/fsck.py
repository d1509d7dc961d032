"""Judging an image with the real e2fsck, the final word on whether a simulation corrupted it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_e2fs.tools import meaningful_lines, run_tool

#: e2fsck's closing statistics, e.g. "home.img: 11/2048 files (0.0% non-contiguous), 1/8 blocks".
_STATISTICS = re.compile(r"\d+/\d+ files .*\d+/\d+ blocks")


@dataclass(frozen=True)
class FsckVerdict:
    """What e2fsck thought of an image, in a form a report or a test can check."""

    ok: bool
    returncode: int
    summary: str
    output: str


def fsck(image: Path) -> FsckVerdict:
    """Run ``e2fsck -fn`` (forced, read-only: the image is never changed) and judge its result."""
    if not Path(image).is_file():
        raise ImageError(f"no image to check at {image}")
    result = run_tool("e2fsck", ["-fn", str(image)], check=False)
    output = result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")
    return FsckVerdict(
        ok=result.returncode == 0,
        returncode=result.returncode,
        summary=_summary(output, result.returncode),
        output=output,
    )


def _summary(output: str, returncode: int) -> str:
    """The statistics line if e2fsck got that far; else its "e2fsck: ..." error; else the last line.

    When e2fsck cannot even open the image the last line is advice ("e2fsck -b 32768 <device>"),
    so the error line is the one that says what is wrong.
    """
    lines = meaningful_lines(output)
    statistics = [line for line in lines if _STATISTICS.search(line)]
    if statistics:
        return statistics[-1]
    errors = [line for line in lines if line.startswith("e2fsck:")]
    if errors:
        return errors[0]
    return lines[-1] if lines else f"e2fsck printed nothing (exit status {returncode})"
