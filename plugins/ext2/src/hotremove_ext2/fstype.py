"""ext2 as a filesystem type: e2fsprogs images (:mod:`hotremove_e2fs`), ``ext2_aops`` or
``ext2_nobh_aops`` in every kernel, no journal.

Debian's kernels build ext2 support into the ext4 driver (``CONFIG_EXT4_USE_FOR_EXT2``): a
guest mounts ``-t ext2`` after loading ``ext4``. That driver gives every page buffer_heads, so
the ``nobh`` option (pages without buffers, removed in ≈v6.0: "ext2: remove nobh support")
cannot be mirrored in a guest. The simulator keeps ext2's own tables in 6.x: the ext4 driver
migrates an ext2 image's pages with ``buffer_migrate_folio`` too (``ext4_aops`` without a
journal), so the outcome is the same (kernel-reference "Observed on real kernels").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hotremove.fs.fstype import FsConfig, GuestMount
from hotremove.kernels import Kernel
from hotremove.model.address_space import AddressSpaceOps
from hotremove_e2fs.aops import ext2_set_aops
from hotremove_e2fs.family import ExtFamilyType


class Ext2(ExtFamilyType):
    name = "ext2"
    description = "ext2 images (mke2fs -d); ext2_aops, or ext2_nobh_aops with nobh"
    options: ClassVar[Mapping[str, str]] = {
        "nobh": "pages without buffer_heads (ext2_nobh_aops, migrated by plain copy)",
    }

    def aops(self, cfg: FsConfig, kernel: Kernel) -> AddressSpaceOps:
        return ext2_set_aops(cfg.options)

    def guest(self, cfg: FsConfig, kernel: Kernel) -> GuestMount:
        if "nobh" in cfg.options:
            raise ValueError(
                "options: 'nobh' cannot be mirrored (the ext4 driver that mounts ext2 in the "
                "guest always attaches buffer_heads)"
            )
        return GuestMount("ext2", (), ("ext4",))


EXT2 = Ext2()
