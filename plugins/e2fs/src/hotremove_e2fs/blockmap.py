"""Where each file's data blocks physically live in an image, read with debugfs.

debugfs's ``blocks`` command also lists indirect blocks and extent-tree blocks, interleaved with
the data blocks and unlabelled, so it cannot be used. ``stat`` labels every run with its logical
block numbers — ``(0-11):588-599, (IND):600, (12):601`` or ``(ETB0):1395, (0-7):1330-1337`` — so
data runs are the ones whose label is numeric, and metadata (IND/DIND/TIND/ETBn) is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_e2fs.tools import fs_path, run_debugfs

#: One data run in ``stat`` output: (first[-last][flag]):pfirst[-plast].
_RUN = re.compile(r"\((\d+)(?:-(\d+))?(?:\[\w+\])?\):(\d+)(?:-(\d+))?")
_SIZE = re.compile(r"^User:.*\bSize:\s*(\d+)", re.MULTILINE)
_BLOCK_SIZE = re.compile(r"^Block size:\s*(\d+)", re.MULTILINE)
_MAP_START = re.compile(r"^(BLOCKS|EXTENTS):", re.MULTILINE)


def block_maps(image: Path, paths: Sequence[str]) -> dict[str, list[int]]:
    """Physical block of each logical data block, per file: the simulator's page→block truth.

    All paths go through one debugfs process, so thousands of files cost one subprocess.
    """
    return {path: blocks for path, (_size, blocks) in file_maps(image, paths).items()}


def file_maps(image: Path, paths: Sequence[str]) -> dict[str, tuple[int, list[int]]]:
    """Each file's size in bytes and its block map (:func:`block_maps`), as the image's inodes
    record them: what verification checks the maps it reads files through against."""
    run = run_debugfs(image, ["stats -h", *(f"stat {fs_path(path)}" for path in paths)])
    block_size = _block_size(image, run.outputs[0])
    return {
        path: _file_map(path, output, block_size, run.errors)
        for path, output in zip(paths, run.outputs[1:], strict=True)
    }


def journal_blocks(image: Path) -> int:
    """The size of the image's journal in filesystem blocks (0: no journal): jbd2 must
    checkpoint when its log fills, so a small journal writes data home early."""
    run = run_debugfs(image, ["stats -h", "stat <8>"])
    if "has_journal" not in run.outputs[0]:
        return 0
    size = _SIZE.search(run.outputs[1])
    return int(size.group(1)) // _block_size(image, run.outputs[0]) if size else 0


def _block_size(image: Path, stats: str) -> int:
    """The filesystem block size from ``stats -h``."""
    match = _BLOCK_SIZE.search(stats)
    if match is None:
        raise ImageError(f"debugfs did not report a block size for {image}")
    return int(match.group(1))


def _file_map(path: str, stat: str, block_size: int, errors: list[str]) -> tuple[int, list[int]]:
    """Parse one ``stat`` output into a logical-order list; a hole or a short map is an error."""
    size = _SIZE.search(stat)
    start = _MAP_START.search(stat)
    if size is None or start is None:
        reason = next((line for line in errors if fs_path(path).strip('"') in line), None)
        raise ImageError(f"cannot map {path!r}: {reason or 'debugfs printed no block map'}")
    runs = sorted(_parse_runs(path, stat[start.end() :]))
    nbytes = int(size.group(1))
    expected = -(-nbytes // block_size)
    physical: list[int] = []
    for lfirst, pstart, count in runs:  # runs must tile 0 .. expected-1, no gap, no overlap
        if lfirst != len(physical):
            break
        physical.extend(range(pstart, pstart + count))
    if len(physical) != expected or sum(count for _l, _p, count in runs) != expected:
        mapped = sum(count for _l, _p, count in runs)
        raise ImageError(
            f"cannot map {path!r}: {mapped} data blocks mapped but its size needs "
            f"{expected} (sparse file or damaged image)"
        )
    return nbytes, physical


def _parse_runs(path: str, text: str) -> list[tuple[int, int, int]]:
    """(first logical, first physical, blocks) of every numeric-labelled run; IND/DIND/TIND/ETB
    runs don't match."""
    runs: list[tuple[int, int, int]] = []
    for match in _RUN.finditer(text.split("\nTOTAL:", 1)[0]):
        first, last, pfirst, plast = match.groups()
        lfirst, pstart = int(first), int(pfirst)
        llast = int(last) if last else lfirst
        pend = int(plast) if plast else pstart
        if pend - pstart != llast - lfirst:
            raise ImageError(f"cannot map {path!r}: malformed debugfs run {match.group(0)!r}")
        runs.append((lfirst, pstart, llast - lfirst + 1))
    return runs
