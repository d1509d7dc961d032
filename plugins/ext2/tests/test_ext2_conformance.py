"""The ext2 plugin passes the plugin conformance suite (hotremove.testing.conformance)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite


class TestExt2Conformance(ConformanceSuite):
    plugin = "ext2"
    dist = "hotremove-ext2"
    filesystems: ClassVar = {"ext2": {"ext2_aops": (), "ext2_nobh_aops": ("nobh",)}}
