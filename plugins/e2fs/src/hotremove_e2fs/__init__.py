"""Real ext2/ext3/ext4 images through e2fsprogs: build them, map them, read them, check them.

The simulator's claims about which blocks hold which file data are verified here against the
real on-disk format, never against the simulator's own bookkeeping.
"""

from __future__ import annotations

from hotremove_e2fs.blockmap import block_maps, file_maps, journal_blocks
from hotremove_e2fs.fsck import FsckVerdict, fsck
from hotremove_e2fs.mkfs import make_image
from hotremove_e2fs.readback import read_files
from hotremove_e2fs.tools import e2fsprogs_binary, run_tool

__all__ = [
    "FsckVerdict",
    "block_maps",
    "e2fsprogs_binary",
    "file_maps",
    "fsck",
    "journal_blocks",
    "make_image",
    "read_files",
    "run_tool",
]
