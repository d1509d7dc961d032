"""Pages whose ->private is a filesystem's folio state, not buffer_heads (iomap's
``iomap_folio_state``, btrfs' subpage state): ``filemap_migrate_folio`` moves the state whole
— ``folio_attach_private(dst, folio_detach_private(src))``: PG_private, the reference and
->private on the new page, the old one clean — on the per-page path and on the batched one;
a dirty page is written by its block map; the fallback releases a clean page's state first.

The type here is a test's own (``iomapfs``): ext2 images (made, mapped, checked and read by
the ext2 type) whose files get a table with ``private="folio_state"`` — the shape of an
iomap filesystem's page cache on images this host can make and check.
"""

from __future__ import annotations

import numpy as np
import pytest

from hotremove import hookimpl
from hotremove.fs.fstype import FilesystemType
from hotremove.fs.registry import known, using
from hotremove.mm.migrate import FILEMAP_MIGRATE_FOLIO
from hotremove.model.address_space import AddressSpaceOps
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import FolioState, PG_dirty, PG_private, page_has_buffers
from hotremove.testing import small_scenario, strict_plugins

IOMAP_AOPS = AddressSpaceOps("iomapfs_aops", "iomapfs", private="folio_state")


class IomapFs(FilesystemType):
    """ext2 images; files whose pages carry a folio state."""

    name = "iomapfs"
    block_sizes = (1024, 4096)
    default_block_size = 4096

    def __init__(self) -> None:
        self.images = known("ext2")

    def make_image(self, image, cfg, files):
        self.images.make_image(image, cfg, files)

    def map_files(self, image, cfg, paths):
        return self.images.map_files(image, cfg, paths)

    def check(self, image, cfg):
        return self.images.check(image, cfg)

    def read_files(self, image, cfg, paths):
        return self.images.read_files(image, cfg, paths)

    def aops(self, cfg, kernel):
        return IOMAP_AOPS


class IomapPlugin:
    @hookimpl
    def hotremove_register_filesystem_types(self, register):
        register(IomapFs())

    @hookimpl
    def hotremove_register_filesystems(self, register):
        register("iomapfs", aops=[IOMAP_AOPS.name])

    @hookimpl
    def hotremove_migrate_strategy(self, mapping, policy):
        if policy == "auto" and mapping.a_ops.name == IOMAP_AOPS.name:
            return FILEMAP_MIGRATE_FOLIO
        return None


@pytest.fixture(scope="module")
def plugins():
    return strict_plugins(("iomapfs", IomapPlugin()), allow=["generic_writeback"])


def scenario(plugins, kernel=None, **workload):
    with using(plugins.fs_types):
        return small_scenario(
            {"type": "iomapfs", "block_size": 1024},
            placement="fill",
            blocks=(0,),
            kernel=kernel,
            **workload,
        )


def folio_pages(built):
    """(mapping, index, pfn, state) of every cached page in block 0."""
    memory = built.machine.memory
    return [
        (m, i, p.pfn, p.private)
        for m in built.machine.mappings
        for i, p in m.i_pages.items()
        if memory.block_of(p.pfn) == 0
    ]


def test_the_builder_attaches_one_folio_state_a_page(plugins, hotremove_build):
    built = hotremove_build(scenario(plugins, dirty=0.0), plugins)
    pages = [p for m in built.machine.mappings for p in m.i_pages.values()]
    assert pages and all(p.flags & PG_private and p._refcount == 2 for p in pages)
    states = [p.private for p in pages]
    assert all(isinstance(s, FolioState) for s in states) and len(set(map(id, states))) == len(
        states
    )
    assert not any(page_has_buffers(p) for p in pages)
    assert built.machine.memory.bh_pool.nr == 0, "no buffer_head anywhere"


@pytest.mark.parametrize("batching", [False, True], ids=["per-page", "batched"])
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_folio_state_moves_with_its_page(
    plugins, mode, batching, hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(scenario(plugins, dirty=0.5, mode=mode), plugins)
    before = folio_pages(built)
    dirty = {
        (id(m), i) for m, i, pfn, _s in before if built.machine.memory.pages.flags[pfn] & PG_dirty
    }
    assert before and dirty

    result = hotremove_offline(
        built, plugins, mode=MigrateMode(mode), checks=True, batching=batching
    )

    assert result.offlined and not result.check_failures, result.check_failures
    assert (result.batched > 0) is batching
    stats = result.per_aops[IOMAP_AOPS.name]
    assert (stats.strategy, stats.plugin) == ("filemap_migrate_folio", "iomapfs")
    assert stats.migrated == len(before) and stats.rebound == 0 and stats.written_back == 0
    mm = built.machine.memory.pages
    for mapping, index, old, state in before:
        page = mapping.i_pages[index]
        assert page.pfn != old
        assert page.flags & PG_private and page.private is state, "->private moved whole"
        assert page._refcount == 2, "the page cache's reference and ->private's"
        assert bool(page.flags & PG_dirty) == ((id(mapping), index) in dirty)
        assert mm.refcount[old] == 0 and not mm.flags[old] & PG_private
        assert old not in mm.private, "the old frame keeps no state"
    assert built.machine.io.write_requests == 0, "moving a folio state is no I/O"
    verdict = hotremove_verify(built, plugins)  # sync writes the dirty pages by block map
    assert verdict.ok, verdict.as_dict()
    assert built.machine.io.write_requests > 0


def test_both_paths_leave_the_same_machine(plugins, hotremove_build, hotremove_offline):
    runs = []
    for batching in (True, False):
        built = hotremove_build(scenario(plugins, dirty=0.3, mode="sync"), plugins)
        result = hotremove_offline(built, plugins, checks=True, batching=batching)
        mm = built.machine.memory.pages
        runs.append(
            (
                result.batched,
                {f: getattr(mm, f).copy() for f in ("flags", "refcount", "index", "private_bh")},
                {pfn: (type(s).__name__, s.owner) for pfn, s in mm.private.items()},
                built.machine.memory.frames.copy(),
            )
        )
    (
        (fast, fast_fields, fast_private, fast_frames),
        (slow, slow_fields, slow_private, slow_frames),
    ) = runs
    assert fast > 0 and slow == 0
    for name, want in slow_fields.items():
        assert np.array_equal(fast_fields[name], want), name
    assert fast_private == slow_private and np.array_equal(fast_frames, slow_frames)


def test_the_fallback_releases_a_clean_pages_state_and_writes_a_dirty_one(
    plugins, hotremove_build, hotremove_offline, hotremove_verify
):
    """``fallback_migrate_folio``: a dirty page is written out (by its block map), then — the
    page clean — ``filemap_release_folio`` drops the state (``iomap_release_folio``) and the
    page moves by plain copy. On 6.12: from v6.16 the fallback no longer writes (a dirty
    folio is -EBUSY; tests/test_kernel_versions.py)."""
    built = hotremove_build(
        scenario(plugins, kernel="6.12", dirty=0.5, strategy="writeback"), plugins
    )
    before = folio_pages(built)

    result = hotremove_offline(built, plugins, policy="writeback", checks=True)

    assert result.offlined and not result.check_failures, result.check_failures
    assert result.per_aops[IOMAP_AOPS.name].written_back > 0
    for mapping, index, _old, _state in before:
        page = mapping.i_pages[index]
        assert not page.flags & (PG_private | PG_dirty) and page._refcount == 1
    assert not built.machine.memory.pages.private, "every state released"
    assert hotremove_verify(built, plugins).ok
