"""address_space, inode and super_block: the page cache side of the model.

``a_ops`` is an *identity* (the name of a kernel operations table such as ``ext2_aops``): the
engine never interprets it. Plugins claim a_ops names and provide the migration strategy, the
way a filesystem's table points ``.migrate_folio`` at ``buffer_migrate_folio``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from hotremove.model.locks import SpinLock
from hotremove.model.page import Page

if TYPE_CHECKING:
    from hotremove.model.blockdev import BlockDevice
    from hotremove.model.buffer_head import BufferHead


#: What a page-cache page of a table carries in ``->private`` (PG_private set, one page
#: reference): ``buffer_heads`` — one per block (PAGE_SIZE // block_size), fs/buffer.c;
#: ``folio_state`` — a filesystem's per-folio state without buffer_heads (iomap's
#: ``iomap_folio_state``, btrfs' subpage state), moved whole by ``filemap_migrate_folio``'s
#: ``folio_attach_private(dst, folio_detach_private(src))``; ``none`` — nothing.
PrivateKind = Literal["buffer_heads", "folio_state", "none"]
PRIVATE_KINDS: tuple[PrivateKind, ...] = ("buffer_heads", "folio_state", "none")


@dataclass(frozen=True)
class AddressSpaceOps:
    """``struct address_space_operations``, by name, and what its pages carry (``private``,
    see :data:`PrivateKind`; since 0.3). ``buffers`` (pages carry buffer_heads) is the older
    spelling, kept: ``buffers=False`` means ``private="none"``; give ``private`` and
    ``buffers`` follows it."""

    name: str
    fs_type: str
    buffers: bool = True
    journalled_data: bool = False
    private: PrivateKind | None = None  # None: from ``buffers``

    def __post_init__(self) -> None:
        if self.private is None:
            object.__setattr__(self, "private", "buffer_heads" if self.buffers else "none")
        elif self.private not in PRIVATE_KINDS:
            raise ValueError(f"private: {self.private!r} is not one of {PRIVATE_KINDS}")
        object.__setattr__(self, "buffers", self.private == "buffer_heads")

    @property
    def folio_state(self) -> bool:
        """Pages carry a filesystem's folio state (not buffer_heads) in ->private."""
        return self.private == "folio_state"


class Journal(Protocol):
    """What the core needs from a filesystem journal a plugin attaches to a super_block."""

    def dirty_data(self, bh: BufferHead) -> None:
        """A write dirtied ``bh``: the journal files it as the data mode says (instead of a
        plain ``mark_buffer_dirty``)."""

    def flush(self) -> None:
        """Commit and checkpoint everything (``jbd2_journal_flush``), as sync does."""


@dataclass(eq=False)
class SuperBlock:
    """A mounted filesystem: its image, block size, data mode and fs-private state."""

    s_id: str  # the scenario's filesystem name
    s_type: str  # the filesystem type's name (``filesystem.type``)
    s_blocksize: int
    s_bdev: BlockDevice
    data_mode: str | None = None  # ordered | writeback | journal (a jbd2 filesystem)
    options: tuple[str, ...] = ()
    #: the on-disk journal's size in blocks (0: no journal, or not known)
    journal_blocks: int = 0
    s_fs_info: dict[str, Any] = field(default_factory=dict)  # plugin-private
    s_journal: Journal | None = None


@dataclass(eq=False)
class Inode:
    i_ino: int
    path: str  # relative to the filesystem root
    i_size: int
    i_sb: SuperBlock
    block_map: list[int]  # logical block → physical block, read from the real image


class XArray(MutableMapping[int, "Page"]):
    """``i_pages``: a file's page cache tree, index → page.

    The kernel's xarray stores page pointers in a radix tree; here the tree is one int32
    array of frame numbers (-1: no page), so a cached page costs 4 bytes instead of a dict
    entry, a key and a handle (~140 bytes), and the engine can read and write many entries
    at once (:meth:`pfns`). Pages come back as handles (compare with ``==``).
    """

    __slots__ = ("_mm", "_nr", "_slots")

    def __init__(self) -> None:
        self._slots = np.full(0, -1, np.int32)
        self._nr = 0
        self._mm: Any = None  # mem_map of the pages stored (taken from the first one)

    def _grow(self, index: int) -> None:
        size = max(index + 1, len(self._slots) * 2, 16)
        slots = np.full(size, -1, np.int32)
        slots[: len(self._slots)] = self._slots
        self._slots = slots

    def __setitem__(self, index: int, page: Page) -> None:
        if index < 0:
            raise KeyError(index)
        if index >= len(self._slots):
            self._grow(index)
        self._mm = page._mm
        if self._slots[index] < 0:
            self._nr += 1
        self._slots[index] = page.pfn

    def __getitem__(self, index: int) -> Page:
        if not 0 <= index < len(self._slots) or self._slots[index] < 0:
            raise KeyError(index)
        return Page(self._mm, int(self._slots[index]))

    def get(self, index: int, default: Any = None) -> Any:  # type: ignore[override]
        if not 0 <= index < len(self._slots) or self._slots[index] < 0:
            return default
        return Page(self._mm, int(self._slots[index]))

    def __contains__(self, index: object) -> bool:
        return (
            isinstance(index, int)
            and 0 <= index < len(self._slots)
            and bool(self._slots[index] >= 0)
        )

    def __delitem__(self, index: int) -> None:
        if index not in self:
            raise KeyError(index)
        self._slots[index] = -1
        self._nr -= 1

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(self._slots >= 0).tolist())

    def __len__(self) -> int:
        return self._nr

    def __repr__(self) -> str:
        return f"<XArray {self._nr} pages>"

    def store_many(self, indices: np.ndarray, pfns: np.ndarray, mm: Any) -> None:
        """Store pages ``pfns`` at ``indices`` at once (the builder, the batched path)."""
        if not len(indices):
            return
        top = int(indices.max())
        if top >= len(self._slots):
            self._grow(top)
        self._mm = mm
        self._nr += int((self._slots[indices] < 0).sum())
        self._slots[indices] = pfns

    def present(self, indices: np.ndarray) -> np.ndarray:
        """Which of ``indices`` (non-negative) hold a page: ``in`` for many at once."""
        slots = self._slots
        inside = indices < len(slots)
        out = np.zeros(len(indices), bool)
        out[inside] = slots[indices[inside]] >= 0
        return out

    def cached(self, indices: Iterable[int]) -> np.ndarray:
        """The indices among ``indices`` (a set of tags: non-negative, no repeats) that hold a
        page, sorted: ``sorted(i for i in indices if i in self)`` in array operations."""
        wanted = np.fromiter(indices, np.int64)
        wanted.sort()
        return wanted[self.present(wanted)]

    def pfns(self, indices: np.ndarray) -> np.ndarray:
        """The frames stored at ``indices`` (every one must be present), as an array."""
        return self._slots[indices].astype(np.int64)

    @property
    def nbytes(self) -> int:
        return self._slots.nbytes


def gather_trees(trees: Sequence[XArray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cached page of many files at once: (which tree, index, pfn), in tree order then
    index order — what ``for t in trees: for i in t`` visits, for whole-machine checks."""
    if not trees:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    slots = [tree._slots for tree in trees]
    sizes = np.fromiter((len(s) for s in slots), np.int64, len(slots))
    flat = np.concatenate(slots)
    present = np.flatnonzero(flat >= 0)
    which = np.repeat(np.arange(len(slots)), sizes)[present]
    starts = np.cumsum(sizes) - sizes
    return which, present - starts[which], flat[present].astype(np.int64)


class AddressSpace:
    """``struct address_space``: one file's page cache."""

    __slots__ = (
        "a_ops",
        "dirtied_when",
        "dirty_tags",
        "host",
        "i_pages",
        "private_lock",
        "wb_err",
        "wb_err_blocks",
    )

    def __init__(self, host: Inode, a_ops: AddressSpaceOps) -> None:
        self.host = host
        self.a_ops = a_ops
        self.i_pages = XArray()
        self.private_lock = SpinLock(f"{host.path}:private_lock")
        self.dirty_tags: set[int] = set()  # PAGECACHE_TAG_DIRTY
        #: ``inode->dirtied_when``: simulated time the file was first dirtied (None: clean)
        self.dirtied_when: float | None = None
        #: ``mapping->wb_err`` (AS_EIO): 0, or -EIO once an asynchronous write failed —
        #: what the next ``fsync`` reports; the disk blocks whose new contents were lost
        self.wb_err = 0
        self.wb_err_blocks: list[int] = []

    def __repr__(self) -> str:
        return f"<AddressSpace {self.host.i_sb.s_id}:{self.host.path} {self.a_ops.name}>"

    @property
    def nrpages(self) -> int:
        return len(self.i_pages)

    def tag_dirty(self, index: int) -> None:
        self.dirty_tags.add(index)

    def set_error(self, index: int, blocks: list[int]) -> None:
        """``mapping_set_error(mapping, -EIO)``: a write of page ``index`` failed."""
        self.wb_err = -5
        self.wb_err_blocks.extend(blocks)

    def mark_dirtied(self, now: float) -> None:
        """``__mark_inode_dirty``: the flusher's expiry counts from the first dirtying."""
        if self.dirtied_when is None:
            self.dirtied_when = now

    def clear_dirty_tag(self, index: int) -> None:
        self.dirty_tags.discard(index)


class AnonVma:
    """The anonymous "mapping" of a process's private pages (``anon_vma``): no a_ops, no
    buffers; page-table entries (``ptes``: virtual page number → pfn) are what moves."""

    __slots__ = ("name", "ptes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ptes: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<AnonVma {self.name} {len(self.ptes)} ptes>"


SWAP_AOPS = AddressSpaceOps("swap_aops", "swap", buffers=False)


class SwapCache:
    """``swapper_space``: anonymous pages that also have a swap slot, indexed by swap entry
    (kept in ``page.private``, as the kernel aliases ``folio->swap`` with ``->private``).
    Holds one reference per page, like the page cache."""

    __slots__ = ("a_ops", "i_pages")

    def __init__(self) -> None:
        self.a_ops = SWAP_AOPS
        self.i_pages: dict[int, Page] = {}

    def __repr__(self) -> str:
        return f"<SwapCache {len(self.i_pages)} pages>"


def probe_mapping(
    a_ops: AddressSpaceOps, *, blocksize: int = 4096, name: str = "probe"
) -> AddressSpace:
    """An address_space of ``a_ops`` on an empty inode and no device: what asking a plugin
    "how would you migrate this a_ops's pages?" needs (the loader's probe, ``plan``, the
    conformance kit), without a machine."""
    sb = SuperBlock(name, a_ops.fs_type, blocksize, s_bdev=None)  # type: ignore[arg-type]
    return AddressSpace(Inode(0, name, 0, sb, []), a_ops)
