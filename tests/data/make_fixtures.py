"""Make the snapshot fixtures of tests/test_snapshot_plan.py.

    uv run python tests/data/make_fixtures.py [LIVE_SNAPSHOT.npz]

* ``snapshot-synthetic.npz``: ten 4 MiB memory blocks (1024 pages) whose frames are written
  here flag by flag, so the tests know every class count (see ``synthetic()``).
* ``snapshot-trimmed.npz`` (only with a live snapshot from ``hotremove snapshot``): the real
  memory blocks :data:`TRIMMED_BLOCKS` of that machine, everything else dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from hotremove.realmachine.kpageflags import (
    KPF_ANON,
    KPF_BUDDY,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_DIRTY,
    KPF_HWPOISON,
    KPF_LRU,
    KPF_MAPPEDTODISK,
    KPF_MLOCKED,
    KPF_MMAP,
    KPF_NOPAGE,
    KPF_OFFLINE,
    KPF_PGTABLE,
    KPF_PRIVATE,
    KPF_REFERENCED,
    KPF_RESERVED,
    KPF_SLAB,
    KPF_SWAPBACKED,
    KPF_SWAPCACHE,
    KPF_THP,
    KPF_UNEVICTABLE,
    KPF_UPTODATE,
    KPF_WRITEBACK,
    kpf,
)
from hotremove.realmachine.snapshot import (
    BlockInfo,
    Mount,
    Snapshot,
    load,
)

HERE = Path(__file__).parent
#: Real blocks kept from this project's development machine (6.18, 24 GiB, 128 MiB blocks):
#: 0 reserved + mixed zones, 1 free (DMA32), 32 slab-blocked, 51 reserved-blocked,
#: 67 and 73 offlinable with page cache, anon and large folios, 100 flagless (lazy memmap).
TRIMMED_BLOCKS = [0, 1, 32, 51, 67, 73, 100]

PPB = 1024  # pages per synthetic block (4 MiB)

FILE = kpf(KPF_UPTODATE, KPF_LRU, KPF_REFERENCED)
FILE_BH = FILE | kpf(KPF_PRIVATE, KPF_MAPPEDTODISK)
FILE_NOBH = FILE | kpf(KPF_MAPPEDTODISK)
FILE_DIRTY_BH = FILE | kpf(KPF_DIRTY, KPF_PRIVATE)
FILE_DIRTY_NOBH = FILE | kpf(KPF_DIRTY)
FILE_WRITEBACK = FILE | kpf(KPF_WRITEBACK, KPF_PRIVATE)
ANON = kpf(KPF_UPTODATE, KPF_LRU, KPF_ANON, KPF_SWAPBACKED, KPF_MMAP)
ANON_MLOCKED = ANON | kpf(KPF_UNEVICTABLE, KPF_MLOCKED)
ANON_SWAPCACHE = ANON | kpf(KPF_SWAPCACHE)
ANON_SWAPOUT = ANON_SWAPCACHE | kpf(KPF_WRITEBACK)
THP = kpf(KPF_THP)
HEAD, TAIL = kpf(KPF_COMPOUND_HEAD), kpf(KPF_COMPOUND_TAIL)
BUDDY = kpf(KPF_BUDDY)


def _fill(row: np.ndarray, counts: np.ndarray, at: int, n: int, flags: int, count: int = 0) -> int:
    row[at : at + n] = flags
    counts[at : at + n] = count
    return at + n


def _folio(row: np.ndarray, counts: np.ndarray, at: int, n: int, flags: int, count: int) -> int:
    row[at] = flags | HEAD
    row[at + 1 : at + n] = flags | TAIL
    counts[at : at + n] = count
    return at + n


def synthetic() -> Snapshot:
    """Ten blocks; the comments give what the plan must find in each."""
    flags = np.zeros((10, PPB), dtype=np.uint64)
    counts = np.zeros((10, PPB), dtype=np.uint8)
    f, c = flags, counts
    # 0: BUDDY heads at pfn 0 and 64 (only heads flagged, like old kernels): pfn 0 may head a
    #    4 MiB block, so 0-63 are free; pfn 64 heads at most 64 pages (64-127 free); the
    #    flagless pages 128-1023 lie beyond any buddy block → flagless.
    f[0, 0] = f[0, 64] = BUDDY
    # 1: every movable kind (current kernels: BUDDY on every free page)
    at = _fill(f[1], c[1], 0, 16, FILE_BH)  # file_buffers 16
    at = _fill(f[1], c[1], at, 8, FILE_NOBH)  # file_clean_nobh 8
    at = _fill(f[1], c[1], at, 12, FILE_DIRTY_BH)  # file_dirty 12 (with buffers)
    at = _fill(f[1], c[1], at, 4, FILE_DIRTY_NOBH)  # file_dirty 4 (no buffers)
    at = _fill(f[1], c[1], at, 4, FILE_WRITEBACK)  # writeback 4
    at = _fill(f[1], c[1], at, 16, ANON, 1)  # anon 16
    at = _fill(f[1], c[1], at, 4, ANON_MLOCKED, 1)  # mlocked 4
    at = _fill(f[1], c[1], at, 4, ANON_SWAPCACHE, 1)  # anon 4 (swap cache)
    at = _folio(f[1], c[1], at, 8, FILE_BH | THP, 0)  # huge 8: a large page-cache folio
    at = _fill(f[1], c[1], at, 2, ANON_SWAPOUT, 1)  # writeback 2 (swap-out in flight)
    _fill(f[1], c[1], at, PPB - at, BUDDY)  # free 946
    # 2: a 2 MiB anonymous THP at offset 512 (a folio in the simulator), a 64 KiB one (order
    #    4, mTHP: base pages in the simulator) at 16, a clean file page at 100
    f[2] = BUDDY
    _folio(f[2], c[2], 512, 512, ANON | THP, 1)
    _folio(f[2], c[2], 16, 16, ANON | THP, 1)
    _fill(f[2], c[2], 100, 1, FILE_BH)
    # 3: page cache, but 2 slab pages and a page table: blocked
    f[3] = BUDDY
    _fill(f[3], c[3], 0, 8, FILE_BH)
    _fill(f[3], c[3], 8, 2, kpf(KPF_SLAB))
    _fill(f[3], c[3], 10, 1, kpf(KPF_PGTABLE))
    # 4: a reserved page, a 4-page kernel compound allocation (not on the LRU) and a mapped
    #    page without flags (a special mapping): 1 reserved + 5 unmovable
    f[4] = BUDDY
    _fill(f[4], c[4], 0, 1, kpf(KPF_RESERVED))
    _folio(f[4], c[4], 4, 4, 0, 0)
    _fill(f[4], c[4], 9, 1, 0, 1)
    # 5: a hole in an online block: no memmap for its second half
    f[5, : PPB // 2] = BUDDY
    f[5, PPB // 2 :] = kpf(KPF_NOPAGE)
    # 6: an offline block (no online memmap: NOPAGE)
    f[6] = kpf(KPF_NOPAGE)
    # 7: free, but the block spans two zones (valid_zones none)
    f[7] = BUDDY
    # 8: a hardware-poisoned page and a ballooned-out (PageOffline) page
    f[8] = BUDDY
    f[8, 3] = kpf(KPF_HWPOISON)
    f[8, 7] = kpf(KPF_OFFLINE)
    # 9: anonymous and clean page cache only, plenty of it
    f[9] = BUDDY
    _fill(f[9], c[9], 0, 96, FILE_BH)
    _fill(f[9], c[9], 96, 64, ANON, 1)
    zones = ["Normal"] * 10
    zones[7] = "none"
    states = ["online"] * 10
    states[6] = "offline"
    return Snapshot(
        block_size=PPB * 4096,
        blocks=[BlockInfo(i, states[i], zones[i], True, 0) for i in range(10)],
        flags=flags,
        counts=counts,
        mounts=[
            Mount("/dev/vda", "/", "ext2", ("rw", "relatime")),
            Mount("/dev/vdb", "/srv", "ext3", ("rw", "data=journal")),
        ],
        kernel="synthetic",
        taken="2026-01-01T00:00:00Z",
        source="synthetic",
        meminfo={"MemTotal": 10 * PPB, "MemFree": 9000},
        note="tests/data/make_fixtures.py",
    )


def main(argv: list[str]) -> None:
    synthetic().save(HERE / "snapshot-synthetic.npz")
    if argv:
        live = load(argv[0])
        note = f"blocks {TRIMMED_BLOCKS} of a live snapshot (tests/data/make_fixtures.py)"
        live.trimmed(TRIMMED_BLOCKS, note=note).save(HERE / "snapshot-trimmed.npz")


if __name__ == "__main__":
    main(sys.argv[1:])
