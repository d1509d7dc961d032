"""The ext3 plugin under the conformance suite (hotremove.testing.conformance), in the only
kernel whose ext3 driver mounts ext3 images: "2004". There the plugin answers the seed's
rebinding for ordered/writeback data — bugs included, so declared non-conforming by name and
its verdict pinned in test_ext3_seed2004.py — and nothing for data=journal (the fallback)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite

SEED = (
    "kernel 2004 runs the seed's rebinding 'with trivial changes', bugs included: it sleeps "
    "in atomic context, inverts buffer_lock/private_lock and dirties whole pages"
)


class TestExt3Conformance(ConformanceSuite):
    plugin = "ext3"
    dist = "hotremove-ext3"
    kernel = "2004"
    filesystems: ClassVar = {
        "ext3": {
            "ext3_ordered_aops": ("data=ordered",),
            "ext3_writeback_aops": ("data=writeback",),
            "ext3_journalled_aops": ("data=journal",),
        }
    }
    unsupported: ClassVar = {
        "conformance[ext3_ordered_aops]": SEED,
        "conformance[ext3_writeback_aops]": SEED,
        "answers[ext3_journalled_aops]": "ext3_journalled_aops had no migratepage",
    }


class TestExt3ConformanceIn612(TestExt3Conformance):
    """Linux 6.12 mounts ext3 images with ext4: the plugin still answers what the historic
    driver had (buffer_migrate_folio), and no case can run."""

    kernel = "6.12"
    unsupported: ClassVar = {
        "answers[ext3_journalled_aops]": "ext3_journalled_aops had no migratepage",
    }
