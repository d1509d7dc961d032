"""The ext3 plugin passes the plugin conformance suite (hotremove.testing.conformance)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import ConformanceSuite


class TestExt3Conformance(ConformanceSuite):
    plugin = "ext3"
    dist = "hotremove-ext3"
    filesystems: ClassVar = {
        "ext3": {
            "ext3_ordered_aops": ("data=ordered",),
            "ext3_writeback_aops": ("data=writeback",),
            "ext3_journalled_aops": ("data=journal",),
        }
    }
    unsupported: ClassVar = {
        "first_pass[ext3_journalled_aops]": (
            "buffers jbd2 holds are busy (buffer_migrate_folio_norefs: -EAGAIN) until the "
            "journal commits and checkpoints between passes"
        ),
    }
