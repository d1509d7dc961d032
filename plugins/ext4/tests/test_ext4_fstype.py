"""The ext4 filesystem type passes the filesystem-type kit (hotremove.testing.fskit), and
picks its tables as ``ext4_set_aops`` does."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hotremove.fs.tables import probe_config
from hotremove.kernels import KERNELS
from hotremove.testing.fskit import FilesystemTypeSuite
from hotremove_ext4.fstype import EXT4


class TestExt4Type(FilesystemTypeSuite):
    fs_type = "ext4"
    plugin = "ext4"
    configs: ClassVar = (
        {},
        {"block_size": 4096, "options": ["nodelalloc"]},
        {"block_size": 2048, "options": ["data=journal"]},
    )


@pytest.mark.parametrize("version", list(KERNELS))
@pytest.mark.parametrize(
    ("options", "table"),
    [
        ((), "ext4_da_aops"),
        (("nodelalloc",), "ext4_aops"),
        (("data=writeback",), "ext4_da_aops"),
        (("data=journal",), "ext4_journalled_aops"),
        (("data=journal", "nodelalloc"), "ext4_journalled_aops"),
    ],
)
def test_ext4_set_aops(version, options, table):
    assert EXT4.aops(probe_config(EXT4, options), KERNELS[version]).name == table


def test_the_guest_mounts_with_the_scenarios_options():
    mount = EXT4.guest(probe_config(EXT4, ("data=journal",)), KERNELS["6.12"])
    assert (mount.fstype, mount.options, mount.modules) == ("ext4", ("data=journal",), ("ext4",))
