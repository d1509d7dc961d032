"""Snapshots of a live machine's page frames, in one compact file.

Longer than 450 lines because the two readers — /proc and /sys of this machine, and a
directory of the same files dumped by a machine without Python — must stay one code path.

What is read (read only: nothing is ever written to /proc or /sys):

* ``/proc/kpageflags``: one u64 of ``KPF_*`` bits per page frame (pfn), and
  ``/proc/kpagecount``: one u64 per pfn, the **mapcount** (page-table mappings), not the
  refcount (Documentation/admin-guide/mm/pagemap.rst). Both are root only, must be read at
  8-byte aligned offsets in multiples of 8 bytes, and end near ``max_pfn``. They are read in
  bounded chunks (:data:`CHUNK_ENTRIES`), only over the pfn ranges of memory blocks that exist.
* ``/sys/devices/system/memory``: ``block_size_bytes`` (hex) and, per ``memoryN``, ``state``,
  ``valid_zones``, ``removable`` and the node link.
* ``/proc/mounts`` (filesystem type and options of mounted block devices; the root filesystem
  is the default owner of the page cache in a plan) and, for a mount that shows no ``data=``
  mode there, ``/proc/fs/DRIVER/DEV/options`` of any driver that lists a device's options
  with the defaults (ext4 does, for the ext2/ext3/ext4 images it mounts), and
  ``MemTotal``/``MemFree`` of ``/proc/meminfo`` (to judge how far flagless frames are really
  free).

A machine without Python (a busybox guest) copies the same files verbatim into a directory
(:data:`DUMP_LAYOUT`); :func:`from_dump` turns that directory into the snapshot :func:`take`
would have made, by the same code (:func:`_assemble`) and into the same file format.

The two files are read one after the other, not atomically: a page can change between its
flags and its count (a buddy page with a mapcount is such a race). Pfns past the end of
``/proc/kpageflags`` are stored as ``KPF_NOPAGE``: a hole is recorded, never guessed.

The page-flag bits are :mod:`hotremove.realmachine.kpageflags`'s; a snapshot's frames are
classified by :mod:`hotremove.realmachine.classes` and rebuilt as a simulated machine by
:mod:`hotremove.realmachine.synthesize`.

File format (``.npz``, no pickles): ``header`` (UTF-8 JSON, see :data:`FORMAT`), ``flags``
(uint64, one row per memory block in header order, ``pages_per_block`` columns) and ``counts``
(the smallest unsigned type that holds the largest mapcount).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hotremove.errors import HotremoveError
from hotremove.fileio import FileRefused, open_regular, replace_file
from hotremove.model.page import PAGE_SIZE
from hotremove.realmachine.kpageflags import KPF_NOPAGE
from hotremove.realmachine.snapshot_file import FORMAT, MAX_FILE, read_arrays

#: Entries per read of /proc/kpageflags (512 KiB): one huge read fails with EINVAL.
CHUNK_ENTRIES = 64 * 1024
_MEMORY_DIR = re.compile(r"^memory(\d+)$")


class SnapshotError(HotremoveError):
    """A snapshot cannot be taken or read (the message says why, in one line)."""


@dataclass(frozen=True)
class BlockInfo:
    """``/sys/devices/system/memory/memoryN`` as it was."""

    index: int
    state: str  # online | offline | going-offline
    valid_zones: str  # e.g. "Normal", "DMA32", "Movable", "none" (mixed: cannot offline)
    removable: bool | None = None
    node: int | None = None


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...] = ()


@dataclass
class Snapshot:
    """Every memory block's frames: ``flags[row, i]`` is the KPF word of pfn
    ``blocks[row].index * pages_per_block + i``."""

    block_size: int
    blocks: list[BlockInfo]
    flags: np.ndarray  # (len(blocks), pages_per_block) uint64
    counts: np.ndarray  # same shape, unsigned: mapcount
    mounts: list[Mount] = field(default_factory=list)
    kernel: str = ""
    taken: str = ""  # ISO 8601 UTC
    source: str = "live"  # live | dump | trimmed | synthetic
    meminfo: dict[str, int] = field(default_factory=dict)  # MemTotal / MemFree, in pages
    note: str = ""

    def __post_init__(self) -> None:
        shape = (len(self.blocks), self.pages_per_block)
        if self.flags.shape != shape or self.counts.shape != shape:
            raise SnapshotError(
                f"snapshot arrays have shape {self.flags.shape}/{self.counts.shape}, "
                f"expected {shape}"
            )

    @property
    def pages_per_block(self) -> int:
        return self.block_size // PAGE_SIZE

    @property
    def nr_pages(self) -> int:
        return self.flags.size

    def row(self, index: int) -> int:
        """The row of memory block ``index`` (its ``memoryN`` number)."""
        for row, block in enumerate(self.blocks):
            if block.index == index:
                return row
        have = _ranges([b.index for b in self.blocks])
        raise SnapshotError(f"memory block {index} is not in the snapshot (blocks: {have})")

    @property
    def root(self) -> Mount | None:
        """The filesystem mounted on ``/`` (the last mount there wins, as in the kernel)."""
        roots = [m for m in self.mounts if m.mountpoint == "/"]
        return roots[-1] if roots else None

    def trimmed(self, indices: list[int], note: str = "") -> Snapshot:
        """A copy with only the memory blocks ``indices`` (fixtures, bug reports)."""
        rows = [self.row(i) for i in indices]
        return Snapshot(
            block_size=self.block_size,
            blocks=[self.blocks[r] for r in rows],
            flags=self.flags[rows].copy(),
            counts=self.counts[rows].copy(),
            mounts=list(self.mounts),
            kernel=self.kernel,
            taken=self.taken,
            source="trimmed",
            meminfo=dict(self.meminfo),
            note=note or self.note,
        )

    # -- file format --------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kernel": self.kernel,
            "taken": self.taken,
            "source": self.source,
            "page_size": PAGE_SIZE,
            "block_size": self.block_size,
            "blocks": [asdict(b) for b in self.blocks],
            "mounts": [asdict(m) for m in self.mounts],
            "meminfo": self.meminfo,
            "note": self.note,
        }

    def save(self, path: Path | str, *, force: bool = True, label: str = "snapshot") -> Path:
        """Write the snapshot: to a temporary file renamed into place, never over a path that
        is not a regular file, over an existing file only with ``force``
        (:func:`hotremove.fileio.replace_file`)."""
        path = Path(path)
        counts = _narrow(self.counts)
        flags = self.flags.astype("<u8", copy=False)
        fields = {**self.header(), "checksum": _checksum(flags, counts)}
        header = json.dumps(fields, separators=(",", ":")).encode()
        try:
            with (
                replace_file(path, label=label, force=force, what="snapshot") as tmp,
                open(tmp, "wb") as out,
            ):
                np.savez_compressed(
                    out, header=np.frombuffer(header, dtype=np.uint8), flags=flags, counts=counts
                )
        except FileRefused as exc:
            raise SnapshotError(str(exc)) from None
        return path


def load(path: Path | str, *, check_memory: Callable[[int], None] | None = None) -> Snapshot:
    """Read a snapshot file; anything wrong with it is a one-line :class:`SnapshotError`
    (:mod:`hotremove.realmachine.snapshot_file`: bounded reads, every field checked).
    ``check_memory(pages)`` may refuse a snapshot too large to plan before its arrays are
    read."""
    path = Path(path)
    try:
        f = open_regular(path, what="snapshot file", limit=MAX_FILE)
    except FileRefused as exc:
        raise SnapshotError(str(exc)) from None
    with f:
        try:
            _, header, flags, counts = read_arrays(f, check_memory)
        except ValueError as exc:
            raise SnapshotError(f"{path}: {exc}") from None
    if header.checksum != _checksum(flags.astype("<u8", copy=False), counts):
        raise SnapshotError(f"{path}: damaged snapshot (its page flags fail their checksum)")
    return Snapshot(
        block_size=header.block_size,
        blocks=[BlockInfo(**b.model_dump()) for b in header.blocks],
        flags=flags,
        counts=counts,
        mounts=[Mount(m.device, m.mountpoint, m.fstype, tuple(m.options)) for m in header.mounts],
        kernel=header.kernel,
        taken=header.taken,
        source=header.source,
        meminfo=dict(header.meminfo),
        note=header.note,
    )


# -- reading a live machine, or a directory of files dumped from one -----------------------------
class _Live:
    """The running machine's /proc and /sys (read with aligned, bounded ``preadv`` calls)."""

    def __init__(self, proc: Path, sysfs: Path) -> None:
        self.proc, self.memdir = proc, sysfs / "devices" / "system" / "memory"

    def u64(self, name: str, ranges: list[tuple[int, int]], fill: int) -> np.ndarray:
        return _read_u64_ranges(self.proc / name, ranges, fill)

    def mounts(self) -> Path:
        return self.proc / "mounts"

    def driver_options(self, device: str) -> list[Path]:
        return sorted((self.proc / "fs").glob(f"*/{glob.escape(device)}/options"))

    def meminfo(self) -> Path:
        return self.proc / "meminfo"

    def kernel(self) -> str:
        return platform.release()

    def taken(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Dump:
    """A directory of raw files copied from a machine without Python (see :data:`DUMP_LAYOUT`)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise SnapshotError(f"{root}: no such dump directory")
        self.root, self.memdir = root, root / "memory"

    def u64(self, name: str, ranges: list[tuple[int, int]], fill: int) -> np.ndarray:
        """Block ``start // n``'s entries from ``<name>/<block>``; a missing or short file is
        ``fill`` past its end (as a short read of /proc is)."""
        width = max((n for _, n in ranges), default=0)
        out = np.full((len(ranges), width), fill, dtype="<u8")
        for row, (start, n) in enumerate(ranges):
            path = self.root / name / str(start // n if n else 0)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
            if len(data) % 8:
                raise SnapshotError(f"{path}: {len(data)} bytes (not whole 8-byte entries)")
            got = np.frombuffer(data, dtype="<u8")[:n]
            out[row, : got.size] = got
        return out

    def mounts(self) -> Path:
        return self.root / "mounts"

    def driver_options(self, device: str) -> list[Path]:
        return sorted(self.root.glob(f"*/{glob.escape(device)}/options"))

    def meminfo(self) -> Path:
        return self.root / "meminfo"

    def kernel(self) -> str:
        return _optional(self.root / "uname") or ""

    def taken(self) -> str:
        return _optional(self.root / "taken") or ""


#: What :func:`from_dump` reads: the files of /proc and /sys that :func:`take` reads, copied
#: verbatim by a shell (``cat``, ``dd``) into one directory.
DUMP_LAYOUT = """\
uname                      uname -r
taken                      date -u +%Y-%m-%dT%H:%M:%SZ (optional)
mounts                     /proc/mounts
DRIVER/DEV/options         /proc/fs/DRIVER/DEV/options (optional; every option, defaults too)
meminfo                    /proc/meminfo (optional)
memory/block_size_bytes    /sys/devices/system/memory/block_size_bytes
memory/memoryN/state       ... and valid_zones, removable; an empty file nodeK for the node link
kpageflags/N               block N's entries of /proc/kpageflags (raw u64, from pfn N * pages
kpagecount/N               per block; short or missing: past the end), likewise /proc/kpagecount
"""


def take(proc: Path | str = "/proc", sysfs: Path | str = "/sys") -> Snapshot:
    """Snapshot the running machine (root only). ``proc``/``sysfs`` are for tests."""
    return _assemble(_Live(Path(proc), Path(sysfs)), source="live")


def from_dump(directory: Path | str) -> Snapshot:
    """The snapshot :func:`take` would have made on the machine whose files were dumped into
    ``directory`` (layout: :data:`DUMP_LAYOUT`) — the same reader, the same file format."""
    return _assemble(_Dump(Path(directory)), source="dump")


def _assemble(src: _Live | _Dump, source: str) -> Snapshot:
    """The one path from a machine's files to a :class:`Snapshot`."""
    memdir = src.memdir
    block_size = _block_size(memdir)
    blocks = _blocks(memdir)
    ppb = block_size // PAGE_SIZE
    ranges = [(b.index * ppb, ppb) for b in blocks]
    with ThreadPoolExecutor(max_workers=2) as pool:  # preadv releases the GIL: overlap both
        flags_job = pool.submit(src.u64, "kpageflags", ranges, 1 << KPF_NOPAGE)
        counts_job = pool.submit(src.u64, "kpagecount", ranges, 0)
        flags, counts = flags_job.result(), counts_job.result()
    return Snapshot(
        block_size=block_size,
        blocks=blocks,
        flags=flags,
        counts=_narrow(counts),
        mounts=_with_data_mode(_mounts(src.mounts()), src),
        kernel=src.kernel(),
        taken=src.taken(),
        source=source,
        meminfo=_meminfo(src.meminfo()),
    )


def _narrow(counts: np.ndarray) -> np.ndarray:
    """Mapcounts in the smallest unsigned type that holds them (at most uint32, clipped)."""
    top = min(int(counts.max()) if counts.size else 0, 2**32 - 1)
    dtype = np.min_scalar_type(top)
    if counts.dtype == dtype:
        return counts
    return np.minimum(counts, top).astype(dtype)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except PermissionError:
        raise SnapshotError(f"cannot read {path}: permission denied (run as root)") from None
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None


def _block_size(memdir: Path) -> int:
    text = _read_text(memdir / "block_size_bytes")
    try:
        size = int(text, 16)
    except ValueError:
        raise SnapshotError(f"{memdir}/block_size_bytes: not a hex number: {text!r}") from None
    if size <= 0 or size % PAGE_SIZE:
        raise SnapshotError(f"{memdir}/block_size_bytes: impossible block size {size}")
    return size


def _blocks(memdir: Path) -> list[BlockInfo]:
    try:
        names = [(int(m.group(1)), n) for n in os.listdir(memdir) if (m := _MEMORY_DIR.match(n))]
    except OSError as exc:
        raise SnapshotError(f"cannot list {memdir}: {exc.strerror or exc}") from None
    if not names:
        raise SnapshotError(f"{memdir}: no memory blocks (no memory hotplug support?)")
    blocks = []
    for index, name in sorted(names):
        d = memdir / name
        removable = _optional(d / "removable")
        node = next((int(n[4:]) for n in os.listdir(d) if re.fullmatch(r"node\d+", n)), None)
        blocks.append(
            BlockInfo(
                index=index,
                state=_read_text(d / "state"),
                valid_zones=_optional(d / "valid_zones") or "",
                removable=None if removable is None else removable == "1",
                node=node,
            )
        )
    return blocks


def _optional(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _read_u64_ranges(path: Path, ranges: list[tuple[int, int]], fill: int) -> np.ndarray:
    """Entries ``[start, start + n)`` of a /proc/kpage* file for each range, one row each,
    read with aligned ``preadv`` calls of at most :data:`CHUNK_ENTRIES`. Entries past the end
    of the file (a short or empty read) are ``fill``."""
    width = max((n for _, n in ranges), default=0)
    out = np.full((len(ranges), width), fill, dtype="<u8")
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        raise SnapshotError(f"cannot read {path}: permission denied (run as root)") from None
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        for row, (start, n) in enumerate(ranges):
            view = memoryview(out[row]).cast("B")
            done = 0
            while done < n:
                want = min(CHUNK_ENTRIES, n - done) * 8
                try:
                    got = os.preadv(fd, [view[done * 8 : done * 8 + want]], (start + done) * 8)
                except OSError as exc:
                    raise SnapshotError(
                        f"cannot read {path} at pfn {start + done:#x}: {exc.strerror or exc}"
                    ) from None
                if got <= 0:
                    break  # end of the file (max_pfn): the rest stays `fill`
                if got % 8:
                    raise SnapshotError(f"{path}: short read of {got} bytes (not whole entries)")
                done += got // 8
    finally:
        os.close(fd)
    return out


def _mounts(path: Path) -> list[Mount]:
    """Mounted block devices (``/dev/...``) with their type and options."""
    mounts = []
    for line in _read_text(path).splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].startswith("/dev/"):
            continue
        device, mountpoint, fstype, options = parts[:4]
        mounts.append(
            Mount(_unescape(device), _unescape(mountpoint), fstype, tuple(options.split(",")))
        )
    return mounts


def _with_data_mode(mounts: list[Mount], src: _Live | _Dump) -> list[Mount]:
    """Mounts with their ``data=`` mode even when /proc/mounts leaves it out (ext4 lists only
    options that differ from the superblock's defaults: ``tune2fs -o journal_data`` makes
    data=journal invisible there); a driver's /proc/fs/DRIVER/DEV/options (ext4's) lists
    every option."""
    out = []
    for m in mounts:
        if not any(o.startswith("data=") for o in m.options):
            paths = src.driver_options(Path(m.device).name)
            text = "\n".join(_optional(p) or "" for p in paths)
            mode = next((o for o in re.split(r"[\n,]", text) if o.startswith("data=")), None)
            if mode:
                m = Mount(m.device, m.mountpoint, m.fstype, (*m.options, mode))
        out.append(m)
    return out


def _unescape(field_: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal; control characters
    stay escaped (a snapshot holds none: its strings reach a terminal)."""

    def char(m: re.Match[str]) -> str:
        c = chr(int(m.group(1), 8))
        return m.group(0) if c < " " or "\x7f" <= c <= "\x9f" else c

    return re.sub(r"\\([0-7]{3})", char, field_)


def _meminfo(path: Path) -> dict[str, int]:
    """MemTotal and MemFree, in pages (missing file or keys: empty)."""
    text = _optional(path) or ""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemFree") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024 // PAGE_SIZE
    return out


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → '0-2, 5, 7-8'."""
    out: list[str] = []
    for v in sorted(values):
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        elif out and "-" not in out[-1] and int(out[-1]) == v - 1:
            out[-1] = f"{out[-1]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)


__all__ = [
    "CHUNK_ENTRIES",
    "DUMP_LAYOUT",
    "FORMAT",
    "BlockInfo",
    "Mount",
    "Snapshot",
    "SnapshotError",
    "from_dump",
    "load",
    "take",
]


def _checksum(flags: np.ndarray, counts: np.ndarray) -> str:
    """sha256 of the page flags and counts as stored: a damaged file is named, not trusted."""
    digest = hashlib.sha256(np.ascontiguousarray(flags).tobytes())
    digest.update(str(counts.dtype).encode())
    digest.update(np.ascontiguousarray(counts).tobytes())
    return digest.hexdigest()
