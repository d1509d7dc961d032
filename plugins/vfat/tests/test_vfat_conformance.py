"""hotremove's plugin conformance suite on this plugin (installed, via its entry point), once
per kernel whose answer differs. Until the core builds images through filesystem-type plugins
it cannot build vfat images, and the suite names the engine runs it could not do; the
declaration, the entry point, the claims and the answers (per kernel) are checked."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite


class TestVfatConformance(ConformanceSuite):
    plugin = "vfat"
    dist = "hotremove-vfat"
    filesystems: ClassVar = {"vfat": {"fat_aops": ()}}  # Linux 6.12: buffer_migrate_folio


class TestVfatConformance61(TestVfatConformance):
    kernel = "6.1"
    unsupported: ClassVar = {
        "answers[fat_aops]": "fat_aops has no migrate_folio before 6.2 (fat: remove ->writepage)"
    }


class TestVfatConformance2004(TestVfatConformance61):
    kernel = "2004"
