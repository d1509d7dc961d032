"""The ext2 filesystem type passes the filesystem-type kit (hotremove.testing.fskit): real
images by mke2fs -d, debugfs maps and reads, e2fsck — and its tables per kernel."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hotremove.fs.tables import probe_config
from hotremove.kernels import KERNELS
from hotremove.testing.fskit import FilesystemTypeSuite
from hotremove_ext2.fstype import EXT2


class TestExt2Type(FilesystemTypeSuite):
    fs_type = "ext2"
    plugin = "ext2"
    configs: ClassVar = ({}, {"block_size": 4096, "options": ["nobh"]})


@pytest.mark.parametrize("version", list(KERNELS))
def test_nobh_files_get_pages_without_buffers_in_every_kernel(version):
    kernel = KERNELS[version]
    assert EXT2.aops(probe_config(EXT2), kernel).name == "ext2_aops"
    nobh = EXT2.aops(probe_config(EXT2, ("nobh",)), kernel)
    assert (nobh.name, nobh.private, nobh.buffers) == ("ext2_nobh_aops", "none", False)


def test_a_guest_cannot_mirror_nobh():
    """Debian's ext4 driver mounts ext2 images and always attaches buffer_heads."""
    assert EXT2.guest(probe_config(EXT2), KERNELS["6.1"]).modules == ("ext4",)
    with pytest.raises(ValueError, match=r"^options: 'nobh' cannot be mirrored"):
        EXT2.guest(probe_config(EXT2, ("nobh",)), KERNELS["6.12"])
