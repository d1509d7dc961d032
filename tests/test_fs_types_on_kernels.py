"""Every installed filesystem type, end to end, on every modelled Debian kernel: the small
real-kernel scenarios (examples/realkernel/*-small.toml: 64 files of 128 KiB read into the
DIMM's first 128 MiB block, 30 % of the pages dirtied, periodic writeback off, the block
offlined) run in the simulator and give what Debian's kernels did under QEMU
(kernel-reference.md, "Observed on real kernels", 400 files × 192 KiB, 3,600 dirty pages):

=========== ============================== ============================================
type        5.10, 6.1                      6.12, 7.2
=========== ============================== ============================================
vfat        offlined, every dirty page     offlined, nothing written
            written (no callback: the      (``buffer_migrate_folio`` since 6.2)
            fallback's ``writeout()``)
xfs         offlined, nothing written (no buffer_heads: ``iomap_migrate_page`` in 5.10,
            ``filemap_migrate_folio`` from 6.0)
btrfs       offlined, nothing written (``btrfs_migratepage`` / ``btrfs_migrate_folio``)
ext2, ext3, offlined, nothing written (``buffer_migrate_page`` / ``buffer_migrate_folio``;
ext4        ext3 is mounted by the ext4 driver)
=========== ============================== ============================================

The mixed scenario puts five types in one block: each takes its own path, and from 6.3 the
``data=journal`` pages jbd2 holds keep the whole block online (-EINTR). Every run ends
verified: each image's own checker clean and every file byte-equal to the golden model.
(minix is an example plugin outside the workspace: tests/test_example_minix_plugin.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hotremove import scenario as scenario_mod
from hotremove.sim.runner import run_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "realkernel"
KERNELS = ("5.10", "6.1", "6.12", "7.2")
#: type → (scenario file, the table its files get)
TYPES = {
    "vfat": ("vfat-small", "fat_aops"),
    "xfs": ("xfs-small", "xfs_address_space_operations"),
    "btrfs": ("btrfs-small", "btrfs_aops"),
    "ext2": ("ext2-small", "ext2_aops"),
    "ext3": ("ext2-small", "ext4_da_aops"),
    "ext4": ("ext4-ordered-small", "ext4_da_aops"),
}
#: the types whose table has no migration callback before 6.2 (fat: ee649af0d9a6)
WRITTEN_BEFORE_6_2 = {"vfat"}


def scenario(fs_type: str, version: str):
    name, _ = TYPES[fs_type]
    text = (EXAMPLES / f"{name}.toml").read_text()
    if fs_type == "ext3":  # ext2-small as ext3 (data=ordered): the ext4 driver mounts it
        text = text.replace('type = "ext2"', 'type = "ext3"')
    scn = scenario_mod.loads(text, source=f"{name}.toml")
    return scn.with_overrides(kernel={"version": version})


def run(scn, plugins, tmp_path):
    report = run_scenario(scn, name="cell", plugins=plugins, workdir=tmp_path)
    assert report.verify is not None and report.verify.ok, report.verify
    assert report.offline.kernel == scn.kernel.version
    return report


@pytest.mark.parametrize("version", KERNELS)
@pytest.mark.parametrize("fs_type", list(TYPES))
def test_each_type_on_each_kernel(fs_type, version, hotremove_plugins, tmp_path):
    report = run(scenario(fs_type, version), hotremove_plugins, tmp_path)
    off = report.offline
    assert off.offlined and not off.failed
    assert off.migrated == 2048, "every page of the 64 files was in the block and moved"
    _, aops = TYPES[fs_type]
    stats = off.per_aops[aops]
    if fs_type in WRITTEN_BEFORE_6_2 and version in ("5.10", "6.1"):
        fallback = "fallback_migrate_page" if version == "5.10" else "fallback_migrate_folio"
        assert (stats.strategy, stats.plugin) == (fallback, "generic_writeback")
        assert stats.written_back == off.written_back > 600, "30 % of 2,048 pages, all written"
        assert report.writeback_ios > 0
    else:
        assert off.written_back == 0 and report.writeback_ios == 0
        assert stats.strategy != "fallback_migrate_folio"


@pytest.mark.parametrize("version", KERNELS)
def test_five_types_in_one_block(version, hotremove_plugins, tmp_path):
    scn = scenario_mod.load(EXAMPLES / "mixed-small.toml").with_overrides(
        kernel={"version": version}
    )
    report = run(scn, hotremove_plugins, tmp_path)
    off = report.offline
    written = {aops: s.written_back for aops, s in off.per_aops.items()}
    quiet = ("ext2_aops", "xfs_address_space_operations", "btrfs_aops")
    assert all(written[a] == 0 for a in quiet), written
    if version in ("5.10", "6.1"):
        assert off.offlined and off.migrated == 5 * 24 * 32
        assert written["fat_aops"] > 0 and written["ext4_journalled_aops"] > 0
        assert off.written_back == written["fat_aops"] + written["ext4_journalled_aops"]
    else:
        assert not off.offlined and off.reason.startswith("signal backoff (-EINTR)")
        assert off.written_back == 0 and report.writeback_ios == 0
        assert {f["reason"] for f in off.failed} == {"busy: buffer held by jbd2 (journal_head)"}
        held = len(off.failed)
        assert 0 < held < 24 * 32 and off.migrated == 5 * 24 * 32 - held


def test_compare_across_kernels_shows_how_each_filesystems_pages_moved() -> None:
    """`compare --kernel` on the mixed scenario: one row per a_ops, one column per kernel, the
    strategy and what it did — vfat's pages written back by 6.1's fallback and rebound by 7.2's
    buffer_migrate_folio, xfs's moved without buffers on both, ext2's rebound on both."""
    from .conftest import invoke

    proc = invoke(
        "compare", EXAMPLES / "mixed-small.toml", "--kernel", "6.1,7.2", "--wide", "--quiet"
    )
    assert proc.returncode == 1, proc.stderr  # 7.2: -EINTR on the journal-held pages
    proc = invoke("compare", EXAMPLES / "mixed-small.toml", "--kernel", "6.1,7.2", "--wide")
    rows = {}
    lines = proc.stdout.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("│").split("│")]
        if (
            line.startswith("│")
            and len(cells) == 3
            and cells[0] not in ("", "a_ops")
            and lines[i + 1].startswith("│")
        ):
            below = [c.strip() for c in lines[i + 1].strip("│").split("│")]
            rows[cells[0]] = list(zip(cells[1:], below[1:], strict=True))
    assert (
        rows["fat_aops"][0][0] == "fallback_migrate_folio" and "written" in rows["fat_aops"][0][1]
    )
    assert rows["fat_aops"][1] == ("buffer_migrate_folio", "768 rebound")
    assert rows["ext2_aops"] == [("buffer_migrate_folio", "768 rebound")] * 2
    assert all(what == "768 moved" for _, what in rows["btrfs_aops"])
    assert rows["xfs_address_space_operations"] == [("filemap_migrate_folio", "768 moved")] * 2
    assert "failed" in rows["ext4_journalled_aops"][1][1]
