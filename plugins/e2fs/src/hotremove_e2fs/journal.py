"""jbd2 as the ext4 driver formats it: the tag size of the image's journal and the credits
one page's ``write()`` handle asks for (``ext4_writepage_trans_blocks() + 1``). The ext4 type
attaches its journal with it, and the ext3 type too from v4.3, when ext4's driver mounts ext3
images."""

from __future__ import annotations

from hotremove.fs.jbd2 import JournalFormat
from hotremove.model.address_space import SuperBlock

#: bytes of an inode in the inode table: mke2fs.conf ``inode_size = 256`` (the images made)
INODE_SIZE = 256

#: ``EXT4_MAX_EXTENT_DEPTH``
EXT4_MAX_EXTENT_DEPTH = 5
#: ``EXT4_META_TRANS_BLOCKS``: superblock, inode, xattr blocks (no quota feature)
EXT4_META_TRANS_BLOCKS = 6


def write_credits(sb: SuperBlock) -> int:
    """The credits ``ext4_write_begin`` starts a data=journal page's handle with:
    ``ext4_writepage_trans_blocks(inode) + 1`` (fs/ext4/inode.c, the same in 6.1 and 6.12) —
    ``ext4_meta_trans_blocks(inode, bpp, bpp)`` (worst-case extent index blocks, a bitmap
    and a group descriptor per group touched, ``EXT4_META_TRANS_BLOCKS``) plus the page's
    ``bpp`` data blocks. ext4 images have extents and 64-byte group descriptors (mke2fs.conf:
    ``extent``, ``64bit``); ext3 images indirect blocks (``ext4_ind_trans_blocks``: 3 a
    block) and 32-byte descriptors. 35 for a 64 MiB 1 KiB-block ext4 image."""
    bs = sb.s_blocksize
    bpp = max(4096 // bs, 1)
    extents = sb.s_type == "ext4"
    idx = EXT4_MAX_EXTENT_DEPTH * (3 if bpp > 1 else 2) if extents else 3 * bpp
    first_data_block = 1 if bs == 1024 else 0
    ngroups = max(-(-(sb.s_bdev.nr_blocks - first_data_block) // (8 * bs)), 1)
    gdb_count = -(-ngroups * (64 if extents else 32) // bs)
    groups = gdpblocks = idx + bpp
    groups = min(groups, ngroups)
    if groups > gdb_count:
        gdpblocks = gdb_count
    return idx + groups + gdpblocks + EXT4_META_TRANS_BLOCKS + bpp + 1


def journal_format(sb: SuperBlock) -> JournalFormat:
    """jbd2's view of the image's journal: ext4 images have metadata_csum (csum v3: 16-byte
    tags, ``journal_tag_bytes``), ext3 images neither csum nor 64bit (8-byte tags)."""
    return JournalFormat(
        tag_bytes=16 if sb.s_type == "ext4" else 8,
        write_credits=write_credits(sb),
        inode_size=INODE_SIZE,
    )


__all__ = [
    "EXT4_MAX_EXTENT_DEPTH",
    "EXT4_META_TRANS_BLOCKS",
    "INODE_SIZE",
    "journal_format",
    "write_credits",
]
