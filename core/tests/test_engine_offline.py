"""offline_pages as a whole: rollback, unmovable pages, anon PTEs, -ENOMEM, the seed's
poison check catching a broken strategy."""

from __future__ import annotations

from dataclasses import dataclass

from hotremove import hookimpl
from hotremove.mm.memory_block import offline
from hotremove.mm.migrate import MigrateControl, folio_migrate_flags, folio_migrate_mapping
from hotremove.model.memory import OFFLINE, ONLINE
from hotremove.model.migrate_mode import Errno, MigrateMode
from hotremove.model.page import PG_reserved
from hotremove.plugins import load_plugins
from hotremove.testing import assert_clean_result, cached_pages_before, small_scenario


def test_region_with_unmovable_page_is_rolled_back(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(small_scenario({"type": "ext2"}))
    memory = built.machine.memory
    block = memory.blocks[1]
    pfn = next(p for p in range(block.start_pfn, block.end_pfn) if memory.is_free(p))
    memory.alloc_page_at(pfn).flags |= PG_reserved
    shots = cached_pages_before(built, [1])

    result = hotremove_offline(built)

    assert not result.offlined
    assert result.failed == [{"pfn": pfn, "reason": "unmovable", "errno": "-EBUSY"}]
    assert memory.block_state[1] == ONLINE, "isolation undone"
    for shot in shots:  # nothing moved, nothing lost
        assert shot.mapping.i_pages[shot.index].pfn == shot.pfn
    assert memory.alloc_page() is not None
    assert hotremove_verify(built).ok


def test_anonymous_pages_move_and_their_ptes_follow(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(small_scenario({"type": "ext2"}, anon="1MiB"))
    vma = built.machine.anon_vmas[0]
    memory = built.machine.memory
    in_region = {vpn: pfn for vpn, pfn in vma.ptes.items() if memory.block_of(pfn) == 1}
    assert in_region

    result = hotremove_offline(built)

    assert_clean_result(result)
    assert result.per_aops["anon"].migrated == len(in_region)
    for vpn, old in in_region.items():
        new = vma.ptes[vpn]
        assert new != old and memory.block_of(new) != 1
        page = memory.pages[new]
        assert page._mapcount == 1 and page._refcount == 1 and page.mapping is vma
    assert memory.block_state[1] == OFFLINE
    assert hotremove_verify(built).ok


def test_no_free_frame_outside_the_region_is_enomem_and_rolls_back(
    hotremove_build, hotremove_offline, hotremove_verify
):
    built = hotremove_build(small_scenario({"type": "ext2"}))
    memory = built.machine.memory
    hog = []
    while (page := memory.alloc_page()) is not None:
        hog.append(page)  # fill every other block: nowhere to migrate to
    for page in hog:
        if memory.block_of(page.pfn) == 1:
            page._refcount = 0
            memory.free_page(page)

    result = hotremove_offline(built)

    assert not result.offlined
    assert {f["reason"] for f in result.failed} == {"-ENOMEM"}
    assert memory.block_state[1] == ONLINE
    for page in hog:
        if memory.block_of(page.pfn) != 1:
            page._refcount = 0
            memory.free_page(page)
    assert hotremove_verify(built).ok


@dataclass(frozen=True)
class ForgetsToCopy:
    """A broken strategy: moves the mapping and flags but never copies the bytes."""

    name: str = "forgets_to_copy"
    rebinds: bool = False

    def migrate_folio(self, mc: MigrateControl, mapping, dst, src, mode) -> Errno:
        from hotremove.model.buffer_head import try_to_free_buffers

        if not try_to_free_buffers(src):
            return Errno.EAGAIN
        rc = folio_migrate_mapping(mapping, dst, src)
        if rc:
            return rc
        folio_migrate_flags(dst, src)
        return Errno.OK


class BrokenPlugin:
    @hookimpl(tryfirst=True)
    def hotremove_migrate_strategy(self, mapping, policy):
        return ForgetsToCopy()


def test_seed_poison_check_catches_a_strategy_that_skips_the_copy(hotremove_build):
    plugins = load_plugins(extra=[("broken", BrokenPlugin())])
    built = hotremove_build(small_scenario({"type": "ext2"}, dirty=0.0), plugins=plugins)
    shots = cached_pages_before(built, [1])

    result = offline(built.machine, plugins.hooks, [1], mode=MigrateMode.SYNC, checks=True)

    copy_failures = {f.pfn for f in result.check_failures if f.check == "copy"}
    assert copy_failures == {s.pfn for s in shots}, "every page moved without its bytes"
    for shot in shots:
        new = shot.mapping.i_pages[shot.index]
        assert new.pfn != shot.pfn
        assert built.machine.memory.frame(new.pfn)[:4].tobytes() == b"\xef\xbe\xad\xde"
