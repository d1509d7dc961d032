"""What the plugin is for: asked as an offline asks (first answer wins, the writeback
fallback last), a minix page gets the kernel's own migrate_folio in each version."""

from __future__ import annotations

import pytest

from hotremove.kernels import KERNELS
from hotremove.model.address_space import AddressSpaceOps, probe_mapping

MINIX = probe_mapping(AddressSpaceOps("minix_aops", "minix"))


@pytest.mark.parametrize(
    ("version", "strategy", "plugin"),
    [
        ("2004", "fallback_migrate_folio", "generic_writeback"),
        ("6.1", "fallback_migrate_folio", "generic_writeback"),
        ("6.12", "buffer_migrate_folio", "minix"),
    ],
)
def test_a_minix_page_gets_its_kernels_migrate_folio(version, strategy, plugin, hotremove_plugins):
    pytest.importorskip("hotremove_generic_writeback", reason="needs hotremove-generic-writeback")

    got, by = hotremove_plugins.hooks.migrate_strategy(MINIX, "auto", KERNELS[version])

    assert (got.name, by) == (strategy, plugin)
    assert got.rebinds == (plugin == "minix"), "only buffer_migrate_folio rebinds (no I/O)"


def test_forced_writeback_is_the_fallbacks(hotremove_plugins):
    pytest.importorskip("hotremove_generic_writeback", reason="needs hotremove-generic-writeback")

    got, by = hotremove_plugins.hooks.migrate_strategy(MINIX, "writeback", KERNELS["6.12"])

    assert (got.name, by) == ("fallback_migrate_folio", "generic_writeback")
