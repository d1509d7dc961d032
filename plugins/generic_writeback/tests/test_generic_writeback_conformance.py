"""The writeback fallback passes the plugin conformance suite, declaring what a fallback
does not do (hotremove.testing.conformance), in Linux 6.12 (the default) and in 2004."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import Case, ConformanceSuite


class TestGenericWritebackConformance(ConformanceSuite):
    plugin = "generic_writeback"
    dist = "hotremove-generic-writeback"
    filesystems: ClassVar = {"*": {}}  # claims no a_ops by name: answers for everything, last
    policies = ("writeback",)
    cases = (
        Case("ext4", "ext4_da_aops"),
        Case("ext2", "ext2_aops", policy="writeback"),
    )
    unsupported: ClassVar = {
        "not_mine_is_none": "the fallback answers for every mapping (trylast)",
        "rebinding": "dirty pages are written back, their buffers dropped, then copied",
        "first_pass": (
            "in async/sync_light a dirty page is -EBUSY until a SYNC pass may write; in 6.x "
            "writeout() returns -EAGAIN and the page moves in a later pass"
        ),
    }


class TestGenericWritebackConformance2004(TestGenericWritebackConformance):
    """The seed's fallback (write, wait, release, copy in one attempt)."""

    kernel = "2004"
