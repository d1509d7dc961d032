"""The least an ext image of a given size spends on itself, so that a scenario whose files
cannot fit is refused by ``scenario check`` with the words ``run`` would use — not only when
mke2fs fails.

A lower bound, from the rules mke2fs applies (e2fsprogs 1.47, lib/ext2fs/mkjournal.c and
misc/mke2fs.c with Debian's /etc/mke2fs.conf, the configuration the images are made with):

* **the journal** (ext3, ext4): ``ext2fs_default_journal_size(blocks)``: none under 2,048
  blocks ("too small for a journal": hotremove refuses that image), then 1,024 blocks under
  32,768, 4,096 under 256 Ki, 8,192 under 512 Ki, 16,384 under 4 Mi, 32,768 beyond;
* **the inode tables**: one 256-byte inode (``inode_size = 256``) per ``inode_ratio`` bytes
  of the image — the ``floppy`` usage type (under 3 MiB) 8,192, ``small`` (under 512 MiB)
  4,096, the default 16,384;
* **the files**: each rounded up to whole blocks, plus its indirect blocks when the type maps
  blocks without extents (ext2, ext3), plus the root directory's block.

Superblocks, group descriptors, bitmaps and the resize inode come on top, so a scenario this
accepts can still be refused by mke2fs when it is within a few percent of full; a scenario
this refuses never fits.
"""

from __future__ import annotations

#: bytes of an inode in the images made (Debian's mke2fs.conf ``inode_size``)
INODE_SIZE = 256
#: ``ext2fs_default_journal_size``: (fewer blocks than this, journal blocks)
_JOURNAL_STEPS = ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192), (4096 * 1024, 16384))
#: the fewest blocks mke2fs puts a journal on
MIN_JOURNAL_FS_BLOCKS = 2048


def journal_blocks(blocks: int) -> int:
    """The journal mke2fs gives an image of ``blocks`` blocks (0: too small for one)."""
    if blocks < MIN_JOURNAL_FS_BLOCKS:
        return 0
    return next((size for limit, size in _JOURNAL_STEPS if blocks < limit), 32768)


def inode_ratio(size: int) -> int:
    """mke2fs.conf's ``inode_ratio`` of the usage type mke2fs picks for ``size`` bytes."""
    if size < 3 << 20:
        return 8192  # floppy
    if size < 512 << 20:
        return 4096  # small
    return 16384


def indirect_blocks(data_blocks: int, block_size: int) -> int:
    """Indirect blocks of a file of ``data_blocks`` blocks mapped without extents (12 direct
    pointers, then single, double and triple indirect blocks of ``block_size / 4`` each)."""
    per = block_size // 4
    left = max(0, data_blocks - 12)
    if not left:
        return 0
    if left <= per:
        return 1
    left -= per
    leaves = -(-left // per)
    if left <= per * per:
        return 1 + 1 + leaves
    return 1 + 1 + per + 1 + -(-(leaves - per) // per) + (leaves - per)


def least_blocks(
    size: int, block_size: int, files: int, file_size: int, *, journalled: bool, extents: bool
) -> int:
    """The fewest blocks an image of ``size`` bytes holding ``files`` files of ``file_size``
    bytes needs (see the module doc)."""
    blocks = size // block_size
    data = -(-file_size // block_size)
    per_file = data + (0 if extents else indirect_blocks(data, block_size))
    inodes = size // inode_ratio(size)
    table = -(-(inodes * INODE_SIZE) // block_size)
    journal = journal_blocks(blocks) if journalled else 0
    return files * per_file + table + journal + 1
