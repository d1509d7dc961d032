"""XFS through its real entry point, per kernel: which table a file gets, what its pages carry,
and which ``migrate_folio`` answers when an offline asks (the first answer wins, hotremove's
writeback fallback last)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hotremove.kernels import KERNELS, Kernel
from hotremove.model.address_space import AddressSpaceOps, probe_mapping
from hotremove_xfs import plugin
from hotremove_xfs.aops import LINVFS_AOPS

#: Versions hotremove does not model (yet): the plugin answers them by ``at_least``.
OTHER = {v: replace(KERNELS["6.1"], version=v) for v in ("4.8", "5.10", "7.2")}


def kernel(version: str) -> Kernel:
    return KERNELS.get(version) or OTHER[version]


def test_entry_point_registers_the_type_and_claims_the_tables(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["xfs"]
    assert info.error is None and info.dist == "hotremove-xfs"
    assert info.types == ["xfs"] and info.fs_types == ["xfs"]
    assert sorted(info.aops) == ["linvfs_aops", "xfs_address_space_operations"]
    assert all(hotremove_plugins.aops_owner[a] == "xfs" for a in info.aops)
    fs_type, owner = hotremove_plugins.fs_types["xfs"]
    assert owner == "xfs" and fs_type.name == "xfs"


@pytest.mark.parametrize(
    ("version", "table", "buffers", "strategy", "plugin"),
    [
        # the seed: XFS pages carry buffer_heads; only ext2/ext3 are rebound → written back
        ("2004", "linvfs_aops", True, "fallback_migrate_folio", "generic_writeback"),
        ("4.8", "xfs_address_space_operations", True, "buffer_migrate_folio", "xfs"),
        ("5.10", "xfs_address_space_operations", False, "iomap_migrate_page", "xfs"),
        ("6.1", "xfs_address_space_operations", False, "filemap_migrate_folio", "xfs"),
        ("6.12", "xfs_address_space_operations", False, "filemap_migrate_folio", "xfs"),
        ("7.2", "xfs_address_space_operations", False, "filemap_migrate_folio", "xfs"),
    ],
)
def test_each_kernel_gets_its_table_and_migrate_folio(
    xfs, xfs_config, hotremove_plugins, version, table, buffers, strategy, plugin
):
    k = kernel(version)
    ops = xfs.aops(xfs_config(block_size=1024), k)
    assert (ops.name, ops.buffers) == (table, buffers)
    assert ops.fs_type == "xfs" and not ops.journalled_data
    assert xfs.aops(xfs_config(block_size=4096), k) == ops

    got, by = hotremove_plugins.hooks.migrate_strategy(
        probe_mapping(ops, blocksize=1024), "auto", k
    )

    assert (got.name, by) == (strategy, plugin)
    assert got.rebinds == (strategy == "buffer_migrate_folio"), "iomap pages have no buffers"


@pytest.mark.parametrize("version", ["2004", "6.1", "6.12"])
def test_forced_writeback_is_the_fallbacks(xfs, xfs_config, hotremove_plugins, version):
    ops = xfs.aops(xfs_config(), KERNELS[version])

    got, by = hotremove_plugins.hooks.migrate_strategy(probe_mapping(ops), "writeback",
                                                       KERNELS[version])  # fmt: skip

    assert (got.name, by) == ("fallback_migrate_folio", "generic_writeback")


def test_the_seeds_table_gets_no_answer_in_later_kernels(hotremove_plugins):
    """6.x mounts XFS with xfs_address_space_operations; linvfs_aops is the 2.6 name only."""
    linvfs = probe_mapping(AddressSpaceOps(LINVFS_AOPS, "xfs"))
    for version in ("6.1", "6.12"):
        assert plugin.hotremove_migrate_strategy(linvfs, "auto", KERNELS[version]) is None
    ext4 = probe_mapping(AddressSpaceOps("ext4_da_aops", "ext4"))
    assert plugin.hotremove_migrate_strategy(ext4, "auto", KERNELS["6.12"]) is None


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_guest_mounts_xfs_after_a_crc32c_provider(xfs, xfs_config, version):
    """Debian 6.1.0-57 / 6.12.118: xfs.ko depends on libcrc32c (modules.dep), whose softdep
    ``pre: crc32c`` modules.dep does not carry."""
    mount = xfs.guest(xfs_config(), KERNELS[version])

    assert (mount.fstype, mount.options) == ("xfs", ())
    assert mount.modules == ("crc32c_generic", "xfs")
