"""What the plugin is for: asked as an offline asks (first answer wins, the writeback
fallback last), a minix page gets the kernel's own migrate_folio in each version; and a
minix image gets minix_aops, with buffer_heads, and a guest mount in every kernel."""

from __future__ import annotations

import pytest

from hotremove.fs.fstype import GuestMount
from hotremove.kernels import KERNELS, Kernel
from hotremove.model.address_space import AddressSpaceOps, probe_mapping

MINIX = probe_mapping(AddressSpaceOps("minix_aops", "minix"))

#: kernel → (minix_aops' migrate_folio as the offline sees it, the plugin that answers).
#: 5.10 and 6.1: no callback (fs/minix/inode.c has only .writepage); ≥ 6.8: "minix: Remove
#: writepage implementation" set .migrate_folio = buffer_migrate_folio.
EXPECTED = {
    "2004": ("fallback_migrate_folio", "generic_writeback"),
    "5.10": ("fallback_migrate_page", "generic_writeback"),  # before v6.0: ->migratepage
    "6.1": ("fallback_migrate_folio", "generic_writeback"),
    "6.12": ("buffer_migrate_folio", "minix"),
    "7.2": ("buffer_migrate_folio", "minix"),
}


def kernel(version: str) -> Kernel:
    """The modelled kernel; versions this hotremove does not model yet (5.10, 7.2) as a
    kernel of that version with 6.1's rules — only their version matters to the answer."""
    if version in KERNELS:
        return KERNELS[version]
    base = KERNELS["6.1"]
    return Kernel(version, f"Linux {version}", base.passes, base.fallback_dirty, True)


@pytest.mark.parametrize(("version", "expected"), EXPECTED.items())
def test_a_minix_page_gets_its_kernels_migrate_folio(version, expected, hotremove_plugins):
    pytest.importorskip("hotremove_generic_writeback", reason="needs hotremove-generic-writeback")

    got, by = hotremove_plugins.hooks.migrate_strategy(MINIX, "auto", kernel(version))

    assert (got.name, by) == expected
    assert got.rebinds == (by == "minix"), "only buffer_migrate_folio rebinds (no I/O)"


def test_forced_writeback_is_the_fallbacks(hotremove_plugins):
    pytest.importorskip("hotremove_generic_writeback", reason="needs hotremove-generic-writeback")

    got, by = hotremove_plugins.hooks.migrate_strategy(MINIX, "writeback", KERNELS["6.12"])

    assert (got.name, by) == ("fallback_migrate_folio", "generic_writeback")


def test_every_modelled_kernel_is_answered(hotremove_plugins):
    """A kernel hotremove models must have a row above: a new one gets a reviewed answer."""
    assert set(KERNELS) <= set(EXPECTED)


@pytest.mark.parametrize("version", EXPECTED)
def test_a_minix_image_gets_minix_aops_with_buffer_heads(version, minix_type, minix_config):
    aops = minix_type.aops(minix_config(), kernel(version))

    assert (aops.name, aops.fs_type, aops.buffers) == ("minix_aops", "minix", True)
    assert minix_type.guest(minix_config(), kernel(version)) == GuestMount("minix", (), ("minix",))


def test_the_type_is_registered_by_this_plugin(hotremove_plugins):
    fs_type, plugin = hotremove_plugins.fs_types["minix"]

    assert (fs_type.name, plugin) == ("minix", "minix")
    info = {p.name: p for p in hotremove_plugins.report}["minix"]
    assert (info.types, info.fs_types, info.aops) == (["minix"], ["minix"], ["minix_aops"])
