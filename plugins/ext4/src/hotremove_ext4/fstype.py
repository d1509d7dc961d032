"""ext4 as a filesystem type: e2fsprogs images with a journal (:mod:`hotremove_e2fs`),
``ext4_set_aops``'s tables, jbd2 on mount.

ext4 tracks ordered data per inode (``jbd2_inode``), not with journal heads on data
buffers, so its jbd2 has ``ordered_data_heads=False``. ext4 did not exist in 2004 (it forked
from ext3 as "ext4dev" in 2.6.19); a scenario that asks for ext4 in kernel "2004" gets ext4's
tables all the same, and the seed's answer for them: the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hotremove.fs.fstype import FsConfig, GuestMount
from hotremove.fs.jbd2 import attach_journal
from hotremove.kernels import Kernel
from hotremove.model.address_space import AddressSpaceOps, SuperBlock
from hotremove.model.machine import Machine
from hotremove_e2fs.aops import ext4_set_aops
from hotremove_e2fs.family import DATA_MODES, ExtFamilyType
from hotremove_e2fs.journal import journal_format


class Ext4(ExtFamilyType):
    name = "ext4"
    description = "ext4 images with a journal; ext4_da_aops, ext4_aops, ext4_journalled_aops"
    options: ClassVar[Mapping[str, str]] = {
        **DATA_MODES,
        "nodelalloc": "no delayed allocation: ext4_aops instead of ext4_da_aops",
    }
    journalled = True
    extents = True

    def aops(self, cfg: FsConfig, kernel: Kernel) -> AddressSpaceOps:
        return ext4_set_aops(cfg.options, self.data_mode(cfg))

    def mount(self, machine: Machine, sb: SuperBlock) -> None:
        """jbd2 as ext4's driver runs it: ordered data per inode, its tag size and credits."""
        attach_journal(machine, sb, ordered_data_heads=False, fmt=journal_format(sb))

    def guest(self, cfg: FsConfig, kernel: Kernel) -> GuestMount:
        return GuestMount("ext4", tuple(cfg.options), ("ext4",))


EXT4 = Ext4()
