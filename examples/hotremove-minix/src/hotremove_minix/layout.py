"""The minix v3 on-disk format, as Linux reads it and util-linux's ``mkfs.minix -3`` lays it out.

Everything is little-endian, in 1 KiB blocks (``mkfs.minix`` always writes ``s_blocksize =
MINIX_BLOCK_SIZE``, 1024; fs/minix/inode.c ``minix_fill_super`` then calls
``sb_set_blocksize(s, m3s->s_blocksize)``)::

    block 0                      boot block (mkfs clears its first 512 bytes)
    block 1                      super block: struct minix3_super_block
    block 2 …                    inode bitmap (s_imap_blocks), bit n = inode n, bit 0 reserved
    …                            zone bitmap (s_zmap_blocks), bit z - s_firstdatazone + 1
    …                            inode table: struct minix2_inode, 64 bytes, inode 1 first
    s_firstdatazone … s_zones-1  data zones (s_log_zone_size = 0: a zone is a block)

``struct minix3_super_block`` and ``struct minix2_inode`` are include/uapi/linux/minix_fs.h's
(the v3 magic ``MINIX3_SUPER_MAGIC`` 0x4d5a sits at byte 24 of the super block, where
``minix_fill_super`` looks for it); a v3 directory entry is ``struct minix3_dir_entry``: a
32-bit inode number and a 60-byte name (``s_dirsize = 64``, ``s_namelen = 60``). An inode's
``i_zone[10]`` holds 7 direct zones, then one single, one double and one triple indirect zone
of 256 32-bit zone numbers each (fs/minix/itree_v2.c ``block_to_path``: ``DIRECT = 7``,
``DEPTH = 4``).

:class:`Geometry` is ``mkfs.minix``'s own arithmetic (util-linux disk-utils/mkfs.minix.c
``setup_tables``/``super_set_map_blocks``), so that a scenario can be refused before anything is
built; the image itself is laid out by the real ``mkfs.minix``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: the only block size ``mkfs.minix`` writes (``MINIX_BLOCK_SIZE``)
BLOCK_SIZE = 1024
#: ``MINIX3_SUPER_MAGIC`` (include/uapi/linux/magic.h)
MAGIC_V3 = 0x4D5A
#: ``MINIX_ROOT_INO``
ROOT_INO = 1
INODE_SIZE = 64
INODES_PER_BLOCK = BLOCK_SIZE // INODE_SIZE
DIRENT_SIZE = 64
NAME_LEN = 60
#: zone numbers an indirect block holds (``sb->s_blocksize / sizeof(block_t)``)
PER_BLOCK = BLOCK_SIZE // 4
DIRECT = 7
#: ``s_max_size`` that ``mkfs.minix -3`` writes: the largest file (``sb->s_maxbytes``)
MAX_FILE_SIZE = 2147483647
#: ``MINIX_MAX_INODES``: mkfs refuses a layout whose first data zone lies beyond it
MAX_FIRST_ZONE = 65535

#: struct minix3_super_block: s_ninodes, s_pad0, s_imap_blocks, s_zmap_blocks,
#: s_firstdatazone, s_log_zone_size, s_pad1, s_max_size, s_zones, s_magic, s_pad2,
#: s_blocksize, s_disk_version
SUPER_V3 = struct.Struct("<IHHHHHHIIHHHB")
#: struct minix2_inode: i_mode, i_nlinks, i_uid, i_gid, i_size, i_atime, i_mtime, i_ctime,
#: i_zone[10]
INODE_V2 = struct.Struct("<HHHHIIII10I")
DIRENT_V3 = struct.Struct(f"<I{NAME_LEN}s")
#: a whole indirect block
ZONE_BLOCK = struct.Struct(f"<{PER_BLOCK}I")

S_IFDIR = 0o040000
S_IFREG = 0o100000


def data_blocks(size: int) -> int:
    """Blocks holding a file of ``size`` bytes."""
    return -(-size // BLOCK_SIZE)


def indirect_blocks(blocks: int) -> int:
    """Indirect blocks a file of ``blocks`` data blocks needs (what fs/minix/itree_common.c
    ``nblocks`` adds to the data blocks)."""
    left = blocks - DIRECT
    if left <= 0:
        return 0
    extra = 1  # the single indirect block
    left -= PER_BLOCK
    if left > 0:  # the double indirect block and the blocks it points at
        here = min(left, PER_BLOCK * PER_BLOCK)
        extra += 1 + -(-here // PER_BLOCK)
        left -= here
    if left > 0:  # the triple indirect block, its double and its single indirect blocks
        extra += 1 + -(-left // (PER_BLOCK * PER_BLOCK)) + -(-left // PER_BLOCK)
    return extra


@dataclass(frozen=True)
class Geometry:
    """Where ``mkfs.minix -3 [-i inodes] image`` puts things on an image of ``blocks`` blocks."""

    blocks: int
    inodes: int
    imap_blocks: int
    zmap_blocks: int
    first_zone: int

    @classmethod
    def for_image(cls, blocks: int, inodes: int = 0) -> Geometry:
        """mkfs.minix.c ``setup_tables``: one inode per 3 blocks up to 512 MiB, per 8 up to
        2 GiB, per 16 beyond (unless ``-i`` asks), rounded up to a whole inode block; the
        maps sized by ``super_set_map_blocks``; the data after boot, super, maps and inodes."""
        if not inodes:
            if blocks > 2048 * 1024:
                inodes = blocks // 16
            elif blocks > 512 * 1024:
                inodes = blocks // 8
            else:
                inodes = blocks // 3
        inodes = -(-inodes // INODES_PER_BLOCK) * INODES_PER_BLOCK
        bits = BLOCK_SIZE * 8
        imap = -(-(inodes + 1) // bits)
        inode_blocks = -(-inodes // INODES_PER_BLOCK)
        zmap = -(-(blocks - (1 + imap + inode_blocks)) // (bits + 1))
        return cls(blocks, inodes, imap, zmap, 2 + imap + zmap + inode_blocks)

    @property
    def data_zones(self) -> int:
        return self.blocks - self.first_zone


def blocks_needed(files: int, file_size: int) -> int:
    """Data zones ``files`` files of ``file_size`` bytes take, with their indirect blocks and
    the root directory's (64-byte entries: ``.``, ``..`` and one per file)."""
    per_file = data_blocks(file_size)
    per_file += indirect_blocks(per_file)
    root = data_blocks((files + 2) * DIRENT_SIZE)
    return files * per_file + root + indirect_blocks(root)
