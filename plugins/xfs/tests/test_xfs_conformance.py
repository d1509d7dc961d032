"""hotremove's plugin conformance suite on the xfs plugin (installed, via its entry point), per
kernel whose answers differ. Until the core builds xfs machines its engine runs are skipped
with that reason; the declaration, entry point, claims and per-kernel answers are checked."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite

TABLES = {"xfs_address_space_operations": (), "linvfs_aops": ()}


class TestXfsConformance(ConformanceSuite):
    plugin = "xfs"
    dist = "hotremove-xfs"
    filesystems: ClassVar = {"xfs": TABLES}  # Linux 6.12: filemap_migrate_folio
    unsupported: ClassVar = {
        "answers[linvfs_aops]": "the 2.6-era table's name: 6.x files get "
        "xfs_address_space_operations",
    }


class TestXfsConformance61(TestXfsConformance):
    kernel = "6.1"


class TestXfsConformance2004(TestXfsConformance):
    kernel = "2004"
    unsupported: ClassVar = {
        "answers": "the seed rebinds ext2/ext3 only: XFS pages are written back",
    }
