"""ext3 as a filesystem type: e2fsprogs images with a journal (:mod:`hotremove_e2fs`), and
which driver mounts them in each kernel.

Only kernel "2004" mounts ext3 images with the ext3 driver (fs/ext3 + jbd): its files get
``ext3_ordered_aops``, ``ext3_writeback_aops`` or ``ext3_journalled_aops``. From v4.3
(c290ea01abb7 "fs: Remove ext3 filesystem driver") the ext4 driver mounts them, so their
files get ext4's tables (``ext4_set_aops``: ``ext4_da_aops``, ``ext4_journalled_aops``) and
the journal is ext4's jbd2, which tracks ordered data per inode (``jbd2_inode``) instead of
with journal heads on data buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hotremove.fs.fstype import FsConfig, GuestMount
from hotremove.fs.jbd2 import attach_journal
from hotremove.kernels import Kernel
from hotremove.model.address_space import AddressSpaceOps, SuperBlock
from hotremove.model.machine import Machine
from hotremove_e2fs.aops import ext3_set_aops, ext4_set_aops
from hotremove_e2fs.family import DATA_MODES, ExtFamilyType
from hotremove_e2fs.journal import journal_format

#: the first kernel whose ext4 driver mounts ext3 images (fs/ext3 removed)
EXT4_MOUNTS_EXT3_SINCE = "4.3"


def driver(kernel: Kernel) -> str:
    """The driver that mounts an ext3 image in ``kernel``: ``ext3`` in the 2004 seed,
    ``ext4`` from v4.3."""
    if kernel.version != "2004" and kernel.at_least(EXT4_MOUNTS_EXT3_SINCE):
        return "ext4"
    return "ext3"


class Ext3(ExtFamilyType):
    name = "ext3"
    description = "ext3 images with a journal; ext3's tables in 2004, ext4's from v4.3"
    options: ClassVar[Mapping[str, str]] = DATA_MODES
    journalled = True
    aops_source = "fs/ext3 removed in v4.3 (c290ea01abb7); fs/ext4/inode.c ext4_set_aops()"

    def aops(self, cfg: FsConfig, kernel: Kernel) -> AddressSpaceOps:
        if driver(kernel) == "ext4":
            return ext4_set_aops(cfg.options, self.data_mode(cfg))
        return ext3_set_aops(self.data_mode(cfg))

    def mount(self, machine: Machine, sb: SuperBlock) -> None:
        """jbd2 on the super_block: the old driver's ordered mode puts journal heads on dirty
        data buffers (``t_sync_datalist``); ext4's does not, and formats the journal its way
        (tag size, write credits: :mod:`hotremove_e2fs.journal`)."""
        if driver(machine.kernel) == "ext3":
            attach_journal(machine, sb, ordered_data_heads=True)
        else:
            attach_journal(machine, sb, ordered_data_heads=False, fmt=journal_format(sb))

    def guest(self, cfg: FsConfig, kernel: Kernel) -> GuestMount:
        return GuestMount("ext3", tuple(cfg.options), ("ext4",))


EXT3 = Ext3()
