"""Whether a scenario's files fit in its XFS image: decided the same way for ``scenario
check`` as for ``run``.

Beside the files' blocks and inodes an image holds its log, every allocation group's headers
and btrees, and per-AG reservations, and mkfs.xfs refuses a protofile that leaves too little
("cannot reserve space"). How much that is depends on mkfs.xfs's geometry, so it is not
computed here: an empty image of the scenario's size and block size is made once (sparse,
milliseconds) and its free blocks read (``fdblocks``); a file set needing less than
:data:`CLEARLY_FITS` of them fits, one needing more than all of them does not, and one in
between is built once — the same ``mkfs.xfs -p`` as the run's, files of the same sizes and
names — to find out. Measured (xfsprogs 6.1): 211 files of 128 KiB fit a 32 MiB image with
4 KiB blocks (6,752 of 6,804 free blocks), 9,574 files of 4 KiB a 64 MiB one (9,574 data
blocks of 14,984 free: the inodes, directory and inode btrees take the rest). Near the edge
mkfs.xfs does not always fail: with 211 such files in 32 MiB it exits 0 having written the
last file short (8 of its 32 blocks, a hole after them) with a bad AGF checksum, so a trial
image counts as built only when ``xfs_repair -n`` finds it clean.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_xfs import mkfs
from hotremove_xfs.xfsprogs import run, xfs_db

#: below this share of an empty image's free blocks a file set fits without building it
#: (the measured overhead of the smallest files is 1.4 blocks a file against 1.1 counted)
CLEARLY_FITS = 0.5
#: a v5 inode (``-i size=512``) and a generous directory entry, counted per file
INODE_SIZE = 512
DIRENT_SIZE = 32


def blocks_needed(files: int, file_size: int, block_size: int) -> int:
    """The files' data blocks, inodes and directory entries, in blocks (a lower bound)."""
    data = -(-file_size // block_size) * files
    return data + -(-files * (INODE_SIZE + DIRENT_SIZE) // block_size)


@functools.lru_cache(maxsize=64)
def free_blocks(tools: tuple[tuple[str, str], ...], size: int, block_size: int) -> int:
    """``fdblocks`` of an empty image made as :func:`hotremove_xfs.mkfs.make_image` makes it."""
    with tempfile.TemporaryDirectory(prefix="hotremove-xfs-fit-") as scratch:
        image = Path(scratch) / "empty.img"
        mkfs.make_image(dict(tools), image, block_size, size, {})
        lines = xfs_db(dict(tools), image, [["sb 0", "p fdblocks"]])[0]
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "fdblocks":
            return int(value)
    raise ImageError(f"xfs_db printed no fdblocks for an empty {size}-byte image")


@functools.lru_cache(maxsize=64)
def builds(
    tools: tuple[tuple[str, str], ...], size: int, block_size: int, files: int, file_size: int
) -> bool:
    """Whether mkfs.xfs makes the image with ``files`` files of ``file_size`` bytes (named
    as the workload names them; XFS allocates the same for any bytes)."""
    data = bytes([0xA5]) * file_size  # one object for every file: memory stays one file
    with tempfile.TemporaryDirectory(prefix="hotremove-xfs-fit-") as scratch:
        try:
            mkfs.make_image(
                dict(tools), Path(scratch) / "trial.img", block_size, size,
                {f"f{i:05d}": data for i in range(files)},
            )  # fmt: skip
        except ImageError as exc:
            if "No space left on device" not in str(exc):
                raise
            return False
        # near full, mkfs.xfs 6.1 may also succeed with a short last file and a bad AGF CRC
        repair = run(dict(tools), "xfs_repair", ["-n", "-f", f"{scratch}/trial.img"], check=False)
        return repair.returncode == 0


def fits(tools: Mapping[str, str], size: int, block_size: int, files: int, file_size: int) -> bool:
    """Whether ``run`` can make the image (see the module doc)."""
    key = tuple(sorted(tools.items()))
    free = free_blocks(key, size, block_size)
    need = blocks_needed(files, file_size, block_size)
    if need <= CLEARLY_FITS * free:
        return True
    if need > free:
        return False
    return builds(key, size, block_size, files, file_size)
