"""btrfs through its installed entry point, per kernel: which ``migrate_folio`` ``btrfs_aops``
has (none in 2004 or before 5.7, ``btrfs_migratepage`` in 5.7–5.19, ``btrfs_migrate_folio``
from 6.0), and what that strategy does to a btrfs data page on the model: the page-cache entry,
the per-folio private (``EXTENT_FOLIO_PRIVATE``), the bytes and the kernel's ordered bit move,
and nothing is written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hotremove.kernels import KERNELS, Kernel
from hotremove.mm.migrate import MigrateControl
from hotremove.model.address_space import AddressSpace, Inode, SuperBlock, probe_mapping
from hotremove.model.cost import SimClock
from hotremove.model.machine import VmStat
from hotremove.model.memory import PhysicalMemory
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import (
    Page,
    PG_dirty,
    PG_mappedtodisk,
    PG_private,
    PG_private_2,
    PG_uptodate,
    attach_page_private,
    get_page,
)
from hotremove_btrfs.fstype import BTRFS_AOPS

#: ``EXTENT_FOLIO_PRIVATE`` (fs/btrfs/extent_io.h): the value btrfs stores in ->private
EXTENT_FOLIO_PRIVATE = 1


def kernel(version: str) -> Kernel:
    """A modelled kernel, or one the project does not model yet (5.4, 5.10, 6.13, 7.2): the
    plugin must answer for it by comparing versions, not by name."""
    if version in KERNELS:
        return KERNELS[version]
    return dataclasses.replace(KERNELS["6.12"], version=version, title=f"Linux {version}")


def answer(hooks, version: str, policy: str = "auto") -> tuple[str, str]:
    strategy, plugin = hooks.migrate_strategy(probe_mapping(BTRFS_AOPS), policy, kernel(version))
    return strategy.name, plugin


def test_entry_point_claims_btrfs_aops_and_the_btrfs_type(hotremove_plugins):
    info = {p.name: p for p in hotremove_plugins.report}["btrfs"]
    assert (info.error, info.dist) == (None, "hotremove-btrfs")
    assert info.aops == ["btrfs_aops"] and info.types == ["btrfs"]
    assert hotremove_plugins.aops_owner["btrfs_aops"] == "btrfs"
    fs_type, plugin = hotremove_plugins.fs_types["btrfs"]
    assert plugin == "btrfs" and fs_type.name == "btrfs"
    assert {v: fs_type.aops(None, KERNELS[v]) for v in KERNELS} == dict.fromkeys(
        KERNELS, BTRFS_AOPS
    )
    assert BTRFS_AOPS.buffers is False, "a btrfs data page carries folio state, no buffers"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2004", ("fallback_migrate_folio", "generic_writeback")),  # btrfs: 2.6.29 (2009)
        ("5.4", ("fallback_migrate_page", "generic_writeback")),  # before f8e6608180a3
        ("5.10", ("btrfs_migratepage", "btrfs")),
        ("6.1", ("btrfs_migrate_folio", "btrfs")),
        ("6.12", ("btrfs_migrate_folio", "btrfs")),
        ("6.13", ("btrfs_migrate_folio", "btrfs")),
        ("7.2", ("btrfs_migrate_folio", "btrfs")),
    ],
)
def test_each_kernel_gets_its_migrate_folio(hotremove_plugins, version, expected):
    assert answer(hotremove_plugins.hooks, version) == expected


def test_writeback_policy_leaves_btrfs_pages_to_the_fallback(hotremove_plugins):
    assert answer(hotremove_plugins.hooks, "6.12", "writeback") == (
        "fallback_migrate_folio",
        "generic_writeback",
    )


def test_other_tables_are_not_answered(hotremove_plugins):
    from hotremove.fs.registry import installed_types
    from hotremove.fs.tables import all_tables
    from hotremove_btrfs import plugin

    others = [t for t in all_tables(installed_types().values()).values() if t != BTRFS_AOPS]
    assert {"ext2_aops", "ext4_da_aops"} <= {t.name for t in others}
    for a_ops in others:
        for k in KERNELS.values():
            assert plugin.hotremove_migrate_strategy(probe_mapping(a_ops), "auto", k) is None


# -- the strategy on a btrfs data page -------------------------------------------------------
@pytest.fixture
def world():
    memory = PhysicalMemory(2 << 20, 1 << 20)
    sb = SuperBlock("data", "btrfs", 4096, s_bdev=None)  # type: ignore[arg-type]
    mapping = AddressSpace(Inode(257, "f00000", 8192, sb, [3000, 3001]), BTRFS_AOPS)
    mc = MigrateControl(memory.frames, SimClock(), VmStat(), copy_seconds=1e-6)
    return memory, mapping, mc


def cached_btrfs_page(memory: PhysicalMemory, mapping: AddressSpace, index: int) -> Page:
    """A page of ``mapping`` as btrfs leaves it after a read, isolated for migration: in the
    page cache (one reference), ``set_folio_extent_mapped`` (PG_private, ->private = 1, one
    reference), plus the isolation reference — random bytes, dirty."""
    page = memory.alloc_page()
    memory.frame(page.pfn)[:] = np.random.default_rng(index).integers(0, 256, 4096, np.uint8)
    page.mapping, page.index = mapping, index
    page.flags |= PG_uptodate | PG_dirty
    mapping.i_pages[index] = page
    attach_page_private(page, EXTENT_FOLIO_PRIVATE)
    get_page(page)
    return page


@pytest.mark.parametrize(
    ("version", "ordered"),
    [
        ("5.10", PG_private_2),
        ("6.1", PG_private_2),
        ("6.12", PG_private_2),
        ("6.13", PG_mappedtodisk),
        ("7.2", 0),
    ],
)
def test_a_page_moves_with_its_folio_state_and_no_io(world, hotremove_plugins, version, ordered):
    memory, mapping, mc = world
    src = cached_btrfs_page(memory, mapping, 1)
    src.flags |= ordered  # an ordered extent still pending (never set by the model itself)
    before = memory.frame(src.pfn).copy()
    dst = memory.alloc_page()
    strategy, _ = hotremove_plugins.hooks.migrate_strategy(mapping, "auto", kernel(version))

    rc = strategy.migrate_folio(mc, mapping, dst, src, MigrateMode.SYNC)

    assert rc == Errno.OK
    assert mapping.i_pages[1] == dst and (dst.mapping, dst.index) == (mapping, 1)
    assert (dst.private, src.private) == (EXTENT_FOLIO_PRIVATE, None)
    assert dst.flags & PG_private and not src.flags & PG_private
    assert (dst._refcount, src._refcount) == (3, 1), "cache + private + alloc; isolation"
    assert np.array_equal(memory.frame(dst.pfn), before)
    assert dst.flags & (PG_dirty | PG_uptodate) == PG_dirty | PG_uptodate
    if ordered:
        assert dst.flags & ordered and not src.flags & ordered, "the ordered bit moved"
    assert mc.clock.io_seconds == 0 and mc.vmstat.nr_written_back == 0
    assert mc.vmstat.nr_rebound == 0, "no buffer_heads to rebind"


@pytest.mark.parametrize("mode", list(MigrateMode))
def test_a_page_someone_holds_stays_put(world, hotremove_plugins, mode):
    memory, mapping, mc = world
    src = cached_btrfs_page(memory, mapping, 0)
    get_page(src)  # a reader's extra reference
    dst = memory.alloc_page()
    strategy, _ = hotremove_plugins.hooks.migrate_strategy(mapping, "auto", kernel("6.12"))

    rc = strategy.migrate_folio(mc, mapping, dst, src, mode)

    assert rc == Errno.EAGAIN
    assert mapping.i_pages[0] == src and src.private == EXTENT_FOLIO_PRIVATE
    assert src.flags & (PG_private | PG_dirty) == PG_private | PG_dirty
    assert (src._refcount, dst._refcount) == (4, 1) and dst.mapping is None
