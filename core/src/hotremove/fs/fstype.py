"""Filesystem types: everything the core needs from a filesystem a plugin brings.

A plugin registers one :class:`FilesystemType` per ``filesystem.type`` it provides through
the ``hotremove_register_filesystem_types(register)`` hook (``register(MyType())``). The core
then names no filesystem and calls no filesystem tool: it asks the type to validate a
scenario's table, build an image holding the scenario's files, map every file to its image
blocks, check the image and read files back from it, which operations table a mount uses in
each modelled kernel, and how a guest kernel mounts it.

Units. ``block_size`` is the size of the filesystem's I/O unit as the page cache sees it
(``sb->s_blocksize``: the buffer size of a buffer_head filesystem, the block size of an
iomap one). A *block number* is an absolute position on the image in those units: the byte
offset of block ``b`` is ``b * block_size``. A file's map lists, for its logical blocks
``0, 1, …`` (as many as ``ceil(size / block_size)``), the block that holds it.

Independence. :meth:`FilesystemType.read_files` and :meth:`FilesystemType.map_files` are how
verification learns what the image holds: they must read the on-disk format (or ask the
filesystem's own tools) and never reuse the builder's bookkeeping, or a simulator that
wrote to the wrong blocks would read back right through its own mistake.

Configuration. Every method gets the scenario's ``[[filesystem]]`` table as ``cfg``, an object
with the attributes of :class:`FsConfig` (``hotremove.scenario.FilesystemConfig`` in a run;
a :class:`ProbeConfig` when the core asks which tables a type's files get, at load time and
for ``hotremove kernels``): read those attributes only.

Since 0.3, additively: :meth:`FilesystemType.data_mode` (the journal's data mode of a mount,
defaults included), :attr:`FilesystemType.checker` (the checker's name in reports),
:attr:`FilesystemType.aops_source`, :class:`FsConfig` and :class:`ProbeConfig`.

Errors. :meth:`validate` raises ``ValueError("key: problem")`` naming the table's key
(``options``, ``block_size``, ``size``, ``files``); the scenario loader prefixes the table
(``filesystem[2].options: …``). Tool failures raise :class:`hotremove.errors.ImageError` with
one line; a missing program raises :class:`hotremove.errors.ToolMissing` naming the Debian
package (see :meth:`FilesystemType.require_tools`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.model.address_space import AddressSpaceOps, SuperBlock
    from hotremove.model.machine import Machine


class FsConfig(Protocol):
    """What a filesystem type reads of a scenario's ``[[filesystem]]`` table (the scenario
    schema's ``FilesystemConfig`` has these attributes, and more)."""

    @property
    def name(self) -> str: ...  # the filesystem's name in the scenario (``home``)
    @property
    def type(self) -> str: ...  # ``filesystem.type``: the type's :attr:`FilesystemType.name`
    @property
    def block_size(self) -> int: ...
    @property
    def size(self) -> int: ...  # the image's size in bytes
    @property
    def files(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def options(self) -> Sequence[str]: ...  # mount options, as the scenario gives them


@dataclass(frozen=True)
class ProbeConfig:
    """A table the core makes up to ask a type a question without a scenario (which a_ops
    its files get with these options, at load time and for ``hotremove kernels``)."""

    name: str
    type: str
    block_size: int
    size: int = 64 << 20
    files: int = 1
    file_size: int = 4096
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileMap:
    """Where one file lives on the image, as its metadata records it."""

    size: int  #: the file's size in bytes (``i_size``)
    blocks: tuple[int, ...]  #: logical block → image block number (see the module doc)


@dataclass(frozen=True)
class CheckVerdict:
    """The filesystem's own checker's judgement of an image (run read-only: ``fsck -n``)."""

    ok: bool
    summary: str  #: one line: what the checker said


@dataclass(frozen=True)
class GuestMount:
    """How a guest kernel mounts the image (``hotremove kernel run/diff``)."""

    fstype: str  #: ``mount -t``
    options: tuple[str, ...] = ()  #: ``mount -o`` (empty: the defaults)
    #: kernel modules to load before mounting, by name (``vfat``, ``xfs``); their
    #: dependencies are found in the kernel's ``modules.dep``. Built-in ones may be named too.
    modules: tuple[str, ...] = ()


class FilesystemType(ABC):
    """One ``filesystem.type`` (see the module doc). Subclass it, set the class attributes,
    implement the abstract methods; override the others where the defaults do not fit."""

    #: the scenario's ``filesystem.type`` (``[a-z0-9_]+``)
    name: ClassVar[str]
    #: one line for ``hotremove plugins`` and the docs
    description: ClassVar[str] = ""
    #: the block sizes (bytes) an image of this type may have, and the default
    block_sizes: ClassVar[tuple[int, ...]] = (4096,)
    default_block_size: ClassVar[int] = 4096
    #: mount options a scenario may give (option → what it means; ``validate`` refuses others)
    options: ClassVar[Mapping[str, str]] = {}
    #: the smallest and largest image the type's tools make (bytes)
    min_size: ClassVar[int] = 1 << 20
    max_size: ClassVar[int] = 8 << 30
    #: every host program the type runs → the Debian package that provides it
    tools: ClassVar[Mapping[str, str]] = {}
    #: what reports call the type's checker (``fsck.fat``, ``xfs_repair``; since 0.3, additive)
    checker: ClassVar[str] = "fsck"
    #: where the kernel decides which table a file gets, when that is another driver's in
    #: some kernel (``hotremove kernels`` cites it beside the rule; since 0.3, additive)
    aops_source: ClassVar[str] = ""

    # -- the scenario ---------------------------------------------------------------------
    def validate(self, cfg: FsConfig) -> None:
        """Refuse what this type cannot build or mount (``ValueError("key: problem")``).
        The default checks ``block_size`` against :attr:`block_sizes`, ``size`` against the
        size limits, every option against :attr:`options`, and that the files' bytes fit in
        the image; a type with metadata overhead to account for should check that too."""
        if cfg.block_size not in self.block_sizes:
            sizes = ", ".join(str(b) for b in self.block_sizes)
            raise ValueError(f"block_size: {self.name} images have blocks of {sizes} bytes")
        if not self.min_size <= cfg.size <= self.max_size:
            raise ValueError(
                f"size: a {self.name} image must be between {_size(self.min_size)} and "
                f"{_size(self.max_size)}"
            )
        for option in cfg.options:
            if option not in self.options:
                known = ", ".join(self.options) or "none"
                raise ValueError(f"options: {self.name} has no option {option!r} (known: {known})")
        if cfg.files * cfg.file_size > cfg.size:
            raise ValueError(
                f"files: {cfg.files} files of {cfg.file_size} bytes do not fit in a "
                f"{_size(cfg.size)} image"
            )

    def data_mode(self, cfg: FsConfig) -> str | None:
        """The data journalling mode a mount with ``cfg.options`` ends up in (``ordered``,
        ``writeback``, ``journal``: the vocabulary of :mod:`hotremove.fs.jbd2` and of reports),
        defaults included; None: the type has no such modes. The default: the ``data=``
        option when one is given, else None (since 0.3, additive)."""
        return next((o.removeprefix("data=") for o in cfg.options if o.startswith("data=")), None)

    def describe(self, cfg: FsConfig) -> str:
        """A few words for reports: ``ext4 (data=journal)``, ``vfat``."""
        return f"{self.name} ({', '.join(cfg.options)})" if cfg.options else self.name

    # -- the host's tools -----------------------------------------------------------------
    def require_tools(self) -> dict[str, str]:
        """Absolute paths of :attr:`tools`, or :class:`~hotremove.errors.ToolMissing` naming
        the Debian packages to install."""
        from hotremove.errors import ToolMissing

        found: dict[str, str] = {}
        missing: list[str] = []
        for program in self.tools:
            path = shutil.which(program) or next(
                (f"{d}/{program}" for d in ("/usr/sbin", "/sbin") if Path(d, program).exists()),
                None,
            )
            if path is None:
                missing.append(program)
            else:
                found[program] = path
        if missing:
            packages = sorted({self.tools[p] for p in missing})
            raise ToolMissing(
                f"{self.name}: {', '.join(missing)} not found (apt-get install "
                f"{' '.join(packages)})"
            )
        return found

    def image_format(self) -> str:
        """What else shapes an image made from equal inputs (the tools' versions, say): part
        of the image cache's key. The default: the plugin's class name only."""
        return type(self).__qualname__

    # -- images ---------------------------------------------------------------------------
    @abstractmethod
    def make_image(self, image: Path, cfg: FsConfig, files: Mapping[str, bytes]) -> None:
        """Create ``image`` (``cfg.size`` bytes) as a real filesystem holding ``files``
        (path relative to the root → bytes; the core gives flat names such as ``f00012``),
        reproducibly (equal inputs, equal bytes where the tools allow it), or leave no file
        at all: build in a temporary file beside ``image`` and rename it into place.
        ``files`` may be a lazy mapping: iterate it once."""

    @abstractmethod
    def map_files(self, image: Path, cfg: FsConfig, paths: Sequence[str]) -> dict[str, FileMap]:
        """Every file's size and block map, read from the image's own metadata."""

    def journal_blocks(self, image: Path, cfg: FsConfig) -> int:
        """The size in blocks of a journal that holds data pages (jbd2's log); 0: none."""
        return 0

    @abstractmethod
    def check(self, image: Path, cfg: FsConfig) -> CheckVerdict:
        """Run the filesystem's own checker read-only; ``ok`` when it found nothing wrong."""

    @abstractmethod
    def read_files(self, image: Path, cfg: FsConfig, paths: Sequence[str]) -> dict[str, bytes]:
        """Every file's bytes, read from the unmounted image by an independent reader."""

    # -- the simulated kernel -------------------------------------------------------------
    @abstractmethod
    def aops(self, cfg: FsConfig, kernel: Kernel) -> AddressSpaceOps:
        """The operations table a regular file gets when ``kernel`` mounts this image with
        ``cfg.options`` (ext3 images get ext4's tables from v4.3, say). Its ``private`` says
        what a page carries (:data:`hotremove.model.address_space.PrivateKind`):
        ``"buffer_heads"`` (one per block), ``"folio_state"`` (a
        :class:`hotremove.model.page.FolioState`, moved whole by ``filemap_migrate_folio``) or
        ``"none"``. Asked per scenario table in a run, and over the type's default mount and
        each of its :attr:`options` alone in every kernel when the core surveys the tables
        (:mod:`hotremove.fs.tables`)."""

    def mount(self, machine: Machine, sb: SuperBlock) -> None:
        """The simulated mount: attach a journal (``sb.s_journal``) or other per-filesystem
        state. Called before any page is cached. The default does nothing."""
        return None

    # -- a real kernel --------------------------------------------------------------------
    def guest(self, cfg: FsConfig, kernel: Kernel) -> GuestMount:
        """How Debian's ``kernel`` mounts the image in a guest. The default: ``mount -t
        <name> -o <options>`` after loading a module of the same name. Raise
        ``ValueError("key: problem")`` for what a guest cannot mirror (the run refuses the
        scenario in one line naming ``filesystem[N].key``). Every installed type's
        ``modules`` (for its default mount) go into the guest's initramfs."""
        return GuestMount(self.name, tuple(cfg.options), (self.name,))


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n} bytes"


@contextlib.contextmanager
def temporary_image(image: Path) -> Iterator[Path]:
    """A temporary file beside ``image`` (same filesystem, so a type's final rename into
    place is atomic; mode 0644), removed unless it was renamed: a failed ``make_image`` leaves
    nothing half-written where the image belongs."""
    from hotremove.errors import ImageError

    try:
        fd, name = tempfile.mkstemp(prefix=f".{image.name}.", suffix=".tmp", dir=image.parent)
    except OSError as exc:
        raise ImageError(f"cannot create an image in {image.parent}: {exc.strerror}") from exc
    os.fchmod(fd, 0o644)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
