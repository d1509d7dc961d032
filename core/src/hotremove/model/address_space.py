"""address_space, inode and super_block: the page cache side of the model.

``a_ops`` is an *identity* (the name of a kernel operations table such as ``ext2_aops``): the
engine never interprets it. Plugins claim a_ops names and provide the migration strategy, the
way a filesystem's table points ``.migrate_folio`` at ``buffer_migrate_folio``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hotremove.model.locks import SpinLock

if TYPE_CHECKING:
    from hotremove.model.blockdev import BlockDevice
    from hotremove.model.buffer_head import BufferHead
    from hotremove.model.page import Page


@dataclass(frozen=True)
class AddressSpaceOps:
    """``struct address_space_operations``, by name. ``buffers``: pages carry buffer_heads."""

    name: str
    fs_type: str
    buffers: bool = True
    journalled_data: bool = False


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
    s_type: str  # ext2 | ext3 | ext4
    s_blocksize: int
    s_bdev: BlockDevice
    data_mode: str | None = None  # ordered | writeback | journal (ext3/ext4)
    options: tuple[str, ...] = ()
    s_fs_info: dict[str, Any] = field(default_factory=dict)  # plugin-private
    s_journal: Journal | None = None


@dataclass(eq=False)
class Inode:
    i_ino: int
    path: str  # relative to the filesystem root
    i_size: int
    i_sb: SuperBlock
    block_map: list[int]  # logical block → physical block, read from the real image


class AddressSpace:
    """``struct address_space``: one file's page cache."""

    __slots__ = ("a_ops", "dirty_tags", "host", "i_pages", "private_lock")

    def __init__(self, host: Inode, a_ops: AddressSpaceOps) -> None:
        self.host = host
        self.a_ops = a_ops
        self.i_pages: dict[int, Page] = {}
        self.private_lock = SpinLock(f"{host.path}:private_lock")
        self.dirty_tags: set[int] = set()  # PAGECACHE_TAG_DIRTY

    def __repr__(self) -> str:
        return f"<AddressSpace {self.host.i_sb.s_id}:{self.host.path} {self.a_ops.name}>"

    @property
    def nrpages(self) -> int:
        return len(self.i_pages)

    def tag_dirty(self, index: int) -> None:
        self.dirty_tags.add(index)

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
