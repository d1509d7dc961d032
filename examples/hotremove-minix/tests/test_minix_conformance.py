"""hotremove's plugin conformance suite, run on this plugin (installed, via its entry point),
once per kernel whose answer differs. hotremove cannot build minix images, so the suite's
engine runs are skipped with that reason; the declaration, the entry point, the claims and
the answers (per kernel) are checked."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite


class TestMinixConformance(ConformanceSuite):
    plugin = "minix"
    dist = "hotremove-minix"
    filesystems: ClassVar = {"minix": {"minix_aops": ()}}  # Linux 6.12: buffer_migrate_folio


class TestMinixConformance61(TestMinixConformance):
    kernel = "6.1"
    unsupported: ClassVar = {"answers[minix_aops]": "minix_aops has no migrate_folio before 6.8"}


class TestMinixConformance2004(TestMinixConformance61):
    kernel = "2004"
