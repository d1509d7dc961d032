"""The page-flag bits of /proc/kpageflags, by the kernel's numbers and names.

One u64 a page frame: the bits of include/uapi/linux/kernel-page-flags.h (stable, documented
in Documentation/admin-guide/mm/pagemap.rst) and those of include/linux/kernel-page-flags.h
(the "kernel hacking" bits, exported unconditionally).
"""

from __future__ import annotations

# -- include/uapi/linux/kernel-page-flags.h (stable, documented in pagemap.rst) ---------------
KPF_LOCKED = 0
KPF_ERROR = 1  # no longer set by current kernels (PG_error is gone)
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10  # first page of a free buddy block (current kernels: every free page)
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17  # hugetlbfs page
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20  # no struct page: a hole
KPF_KSM = 21
KPF_THP = 22  # large folio on the LRU (transparent huge page or large page-cache folio)
KPF_OFFLINE = 23  # PageOffline: ballooned out / unplugged by virtio-mem (was KPF_BALLOON)
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
# -- include/linux/kernel-page-flags.h ("kernel hacking" bits, exported unconditionally) -----
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_MAPPEDTODISK = 34  # PG_mappedtodisk, KPF_OWNER_2 since ≈2024
KPF_OWNER_2 = KPF_MAPPEDTODISK
KPF_PRIVATE = 35  # PG_private: buffer_heads (or other fs data) attached
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37  # PG_owner_priv_1 (PG_checked, ...)
KPF_ARCH = 38  # PG_arch_1
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41
KPF_ARCH_3 = 42

KPF_NAMES: dict[int, str] = {
    value: name.removeprefix("KPF_").lower()
    for name, value in globals().items()
    if name.startswith("KPF_") and isinstance(value, int) and name != "KPF_OWNER_2"
}


def kpf(*bits: int) -> int:
    """The mask of ``bits`` (``kpf(KPF_LRU, KPF_DIRTY)``)."""
    mask = 0
    for bit in bits:
        mask |= 1 << bit
    return mask


def kpf_names(value: int) -> list[str]:
    """``0x28`` → ``['uptodate', 'lru']`` (unknown bits as ``bitN``)."""
    return [KPF_NAMES.get(b, f"bit{b}") for b in range(64) if value >> b & 1]
