"""The ext2 plugin passes the plugin conformance suite (hotremove.testing.conformance)."""

from __future__ import annotations

from typing import ClassVar

from hotremove.testing.conformance import Case, ConformanceSuite


class TestExt2Conformance(ConformanceSuite):
    plugin = "ext2"
    dist = "hotremove-ext2"
    filesystems: ClassVar = {"ext2": {"ext2_aops": (), "ext2_nobh_aops": ("nobh",)}}
    #: the seed's variant is registered but deliberately not conformant (it sleeps in atomic
    #: context: test_ext2_seed2004.py pins that), so only the "auto" cases run the suite
    policies = ("ext2-seed2004",)
    cases: ClassVar = [
        Case("ext2", "ext2_aops", ()),
        Case("ext2", "ext2_nobh_aops", ("nobh",)),
    ]
