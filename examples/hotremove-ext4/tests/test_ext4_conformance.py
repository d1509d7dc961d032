"""hotremove's plugin conformance suite, run on this plugin (installed, via its entry point)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite


class TestExt4Conformance(ConformanceSuite):
    plugin = "ext4"
    dist = "hotremove-ext4"
    filesystems: ClassVar = {
        "ext4": {
            "ext4_da_aops": (),  # the default: delayed allocation
            "ext4_aops": ("nodelalloc",),
        }
    }
