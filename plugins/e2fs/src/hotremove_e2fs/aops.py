"""The ext family's operations tables, and which one a regular file gets.

Names are the kernel's. ext3's tables are the historic fs/ext3 ones (2.6.16–4.2); the driver
was removed in v4.3 (c290ea01abb7 "fs: Remove ext3 filesystem driver") and ext3 images are
served by ext4's tables since: :mod:`hotremove_ext3` says which driver a kernel mounts them
with, these functions only say what each driver's ``*_set_aops`` picks.
"""

from __future__ import annotations

from collections.abc import Sequence

from hotremove.model.address_space import AddressSpaceOps

AOPS: dict[str, AddressSpaceOps] = {
    a.name: a
    for a in (
        AddressSpaceOps("ext2_aops", "ext2"),
        AddressSpaceOps("ext2_nobh_aops", "ext2", private="none"),
        AddressSpaceOps("ext3_ordered_aops", "ext3"),
        AddressSpaceOps("ext3_writeback_aops", "ext3"),
        AddressSpaceOps("ext3_journalled_aops", "ext3", journalled_data=True),
        AddressSpaceOps("ext4_aops", "ext4"),
        AddressSpaceOps("ext4_da_aops", "ext4"),
        AddressSpaceOps("ext4_journalled_aops", "ext4", journalled_data=True),
    )
}


def ext2_set_aops(options: Sequence[str]) -> AddressSpaceOps:
    """fs/ext2/inode.c ``ext2_set_file_ops`` (≤ v5.19): ``nobh`` → ``ext2_nobh_aops``, whose
    pages carry no buffer_heads; else ``ext2_aops``."""
    return AOPS["ext2_nobh_aops" if "nobh" in options else "ext2_aops"]


def ext3_set_aops(data_mode: str | None) -> AddressSpaceOps:
    """Historic fs/ext3/inode.c ``ext3_set_aops``: one table per data mode."""
    mode = data_mode or "ordered"
    return AOPS["ext3_journalled_aops" if mode == "journal" else f"ext3_{mode}_aops"]


def ext4_set_aops(options: Sequence[str], data_mode: str | None) -> AddressSpaceOps:
    """fs/ext4/inode.c ``ext4_set_aops``: ``data=journal`` → ``ext4_journalled_aops``; else
    ``ext4_da_aops`` with delayed allocation (the default), ``ext4_aops`` without
    (``nodelalloc``)."""
    if data_mode == "journal":
        return AOPS["ext4_journalled_aops"]
    return AOPS["ext4_aops" if "nodelalloc" in options else "ext4_da_aops"]


__all__ = ["AOPS", "ext2_set_aops", "ext3_set_aops", "ext4_set_aops"]
