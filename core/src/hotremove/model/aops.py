"""The kernel's operations tables, and which one a file gets (``ext4_set_aops`` and friends).

Names are the kernel's. ext3's tables are the historic fs/ext3 ones (the driver was removed in
v4.3; ext3 images are now served by ext4's tables, but the seed's world had ext3 proper).
"""

from __future__ import annotations

from hotremove.model.address_space import AddressSpaceOps

AOPS: dict[str, AddressSpaceOps] = {
    a.name: a
    for a in (
        AddressSpaceOps("ext2_aops", "ext2"),
        AddressSpaceOps("ext2_nobh_aops", "ext2", buffers=False),
        AddressSpaceOps("ext3_ordered_aops", "ext3"),
        AddressSpaceOps("ext3_writeback_aops", "ext3"),
        AddressSpaceOps("ext3_journalled_aops", "ext3", journalled_data=True),
        AddressSpaceOps("ext4_aops", "ext4"),
        AddressSpaceOps("ext4_da_aops", "ext4"),
        AddressSpaceOps("ext4_journalled_aops", "ext4", journalled_data=True),
    )
}


def select_aops(
    fs_type: str,
    options: tuple[str, ...] | list[str],
    data_mode: str | None,
    driver: str | None = None,
) -> AddressSpaceOps:
    """The table a regular file of this filesystem gets, as the kernel chooses it. ``driver``
    is the filesystem driver that mounts the image (default: its own type; in Linux ≥ 4.3
    ext3 images are mounted by ext4, whose ``ext4_set_aops`` then picks the table)."""
    driver = driver or fs_type
    if driver == "ext2":
        return AOPS["ext2_nobh_aops" if "nobh" in options else "ext2_aops"]
    if driver == "ext3":
        mode = data_mode or "ordered"
        return AOPS["ext3_journalled_aops" if mode == "journal" else f"ext3_{mode}_aops"]
    if data_mode == "journal":
        return AOPS["ext4_journalled_aops"]
    return AOPS["ext4_aops" if "nodelalloc" in options else "ext4_da_aops"]
