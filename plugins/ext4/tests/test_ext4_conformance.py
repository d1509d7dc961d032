"""The ext4 plugin passes the plugin conformance suite (hotremove.testing.conformance), per
kernel: Linux 6.12 (the default), Linux 6.1 and the 2004 seed (where ext4 did not exist)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite

TABLES = {
    "ext4_da_aops": (),  # the default: delayed allocation
    "ext4_aops": ("nodelalloc",),
    "ext4_journalled_aops": ("data=journal",),
}


class TestExt4Conformance(ConformanceSuite):
    plugin = "ext4"
    dist = "hotremove-ext4"
    filesystems: ClassVar = {"ext4": TABLES}
    unsupported: ClassVar = {
        "conformance[ext4_journalled_aops]": (
            "buffer_migrate_folio_norefs refuses every page whose buffers jbd2 still holds, "
            "and an idle filesystem never lets go: the offline runs until its signal (Linux "
            "6.12, kernel-reference 'Observed on real kernels'); pinned in test_ext4_kernels.py"
        ),
    }


class TestExt4Conformance61(TestExt4Conformance):
    kernel = "6.1"
    unsupported: ClassVar = {
        "answers[ext4_journalled_aops]": "buffer_migrate_folio_norefs came in ≈v6.3",
    }


class TestExt4Conformance2004(TestExt4Conformance):
    kernel = "2004"
    unsupported: ClassVar = {"answers": "ext4 did not exist in 2004 (ext4dev: 2.6.19)"}
