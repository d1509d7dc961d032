"""The ext3 filesystem type passes the filesystem-type kit (hotremove.testing.fskit), and says
which driver mounts its images in each kernel: ext3 in 2004, ext4 from v4.3."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hotremove.fs.tables import probe_config
from hotremove.kernels import KERNELS
from hotremove.scenario import loads
from hotremove.testing import small_scenario
from hotremove.testing.fskit import FilesystemTypeSuite
from hotremove_ext3.fstype import EXT3


class TestExt3Type(FilesystemTypeSuite):
    fs_type = "ext3"
    plugin = "ext3"
    configs: ClassVar = ({}, {"block_size": 2048, "options": ["data=journal"]})


@pytest.mark.parametrize(
    ("version", "ordered", "journal"),
    [
        ("2004", "ext3_ordered_aops", "ext3_journalled_aops"),
        ("6.1", "ext4_da_aops", "ext4_journalled_aops"),
        ("6.12", "ext4_da_aops", "ext4_journalled_aops"),
    ],
)
def test_the_ext4_driver_mounts_ext3_images_from_4_3(version, ordered, journal):
    kernel = KERNELS[version]
    assert EXT3.aops(probe_config(EXT3), kernel).name == ordered
    assert EXT3.aops(probe_config(EXT3, ("data=journal",)), kernel).name == journal
    assert EXT3.aops(probe_config(EXT3, ("data=writeback",)), kernel).name == (
        "ext3_writeback_aops" if version == "2004" else "ext4_da_aops"
    )


def test_data_mode_defaults_to_ordered_and_takes_one_mode():
    assert loads('[[filesystem]]\nname = "a"\ntype = "ext3"').filesystem[0].data_mode == "ordered"
    with pytest.raises(ValueError, match=r"^options: give at most one data= mode"):
        EXT3.validate(probe_config(EXT3, ("data=journal", "data=writeback")))


@pytest.mark.parametrize(("version", "heads"), [("2004", True), ("6.12", False)])
def test_the_mount_attaches_the_drivers_jbd2(version, heads, hotremove_build):
    """The old driver's ordered mode puts journal heads on dirty data buffers; ext4's jbd2
    tracks ordered data per inode instead."""
    built = hotremove_build(small_scenario({"type": "ext3"}, kernel=version))
    (sb,) = built.machine.superblocks
    assert sb.s_journal is not None and sb.data_mode == "ordered"
    assert sb.s_journal.ordered_data_heads is heads
