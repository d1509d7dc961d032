"""What each kernel's ``fat_aops`` does with a page an offline must move, asked as an offline
asks (the installed plugins, first answer wins, the writeback fallback last): no callback
before "fat: remove ->writepage" (6.2), ``buffer_migrate_folio`` from it on."""

from __future__ import annotations

import pytest

from hotremove.kernels import KERNELS, Kernel
from hotremove.model.address_space import probe_mapping
from hotremove_vfat.fstype import FAT_AOPS
from hotremove_vfat.plugin import migrate_folio_of

FAT = probe_mapping(FAT_AOPS, blocksize=512)

#: version → (strategy, the plugin that answers). 5.10 and 7.2 are the other Debian kernels
#: measured under QEMU (kernel-reference "Observed on real kernels": 5.10 and 6.1 wrote all
#: 3,600 dirty pages during the offline, 6.12 and 7.2 none).
EXPECTED = {
    "2004": ("fallback_migrate_folio", "generic_writeback"),
    "5.10": ("fallback_migrate_page", "generic_writeback"),  # its v5.10 name
    "6.1": ("fallback_migrate_folio", "generic_writeback"),
    "6.2": ("buffer_migrate_folio", "vfat"),
    "6.12": ("buffer_migrate_folio", "vfat"),
    "7.2": ("buffer_migrate_folio", "vfat"),
}


def kernel(version: str) -> Kernel:
    """A modelled kernel, or — for a version hotremove does not model yet — one with the
    newest model's rules and that version number (what the plugin reads is the number)."""
    if version in KERNELS:
        return KERNELS[version]
    newest = KERNELS["6.12"]
    return Kernel(
        version=version,
        title=f"Linux {version}",
        passes=newest.passes,
        fallback_dirty=newest.fallback_dirty,
        retry_until_signal=newest.retry_until_signal,
    )


@pytest.mark.parametrize(("version", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_a_fat_page_gets_its_kernels_migrate_folio(version, expected, hotremove_plugins):
    got, by = hotremove_plugins.hooks.migrate_strategy(FAT, "auto", kernel(version))

    assert (got.name, by) == expected
    assert got.rebinds == (by == "vfat"), "only buffer_migrate_folio rebinds (no I/O)"


def test_every_modelled_kernel_is_answered_as_measured(hotremove_plugins):
    """Each kernel hotremove models (the list grows) gets an entry above: none is guessed."""
    for version in KERNELS:
        got, by = hotremove_plugins.hooks.migrate_strategy(FAT, "auto", KERNELS[version])
        assert (got.name, by) == EXPECTED[version]


def test_the_callback_came_in_62():
    assert migrate_folio_of(kernel("6.1")) is None
    assert migrate_folio_of(kernel("6.2")).name == "buffer_migrate_folio"
    assert migrate_folio_of(KERNELS["2004"]) is None  # "2004" compares above every 6.x


def test_forced_writeback_is_the_fallbacks(hotremove_plugins):
    got, by = hotremove_plugins.hooks.migrate_strategy(FAT, "writeback", KERNELS["6.12"])
    assert (got.name, by) == ("fallback_migrate_folio", "generic_writeback")


def test_other_tables_are_not_answered(hotremove_plugins):
    from hotremove.fs.registry import installed_types
    from hotremove.fs.tables import all_tables
    from hotremove_vfat import plugin

    others = [t for t in all_tables(installed_types().values()).values() if t.fs_type != "vfat"]
    assert {"ext2_aops", "ext4_da_aops"} <= {t.name for t in others}
    for a_ops in others:
        for version in KERNELS:
            mapping = probe_mapping(a_ops)
            assert plugin.hotremove_migrate_strategy(mapping, "auto", KERNELS[version]) is None


def test_the_entry_point_registers_the_type_and_claims_fat_aops(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["vfat"]
    assert (info.dist, info.error) == ("hotremove-vfat", None)
    assert info.aops == ["fat_aops"] and info.types == ["vfat"]
    assert hotremove_plugins.aops_owner["fat_aops"] == "vfat"
    fs_type, owner = hotremove_plugins.fs_types["vfat"]
    assert owner == "vfat" and fs_type.name == "vfat"
    for version in KERNELS:
        table = fs_type.aops(None, KERNELS[version])
        assert (table.name, table.fs_type, table.buffers) == ("fat_aops", "vfat", True)
