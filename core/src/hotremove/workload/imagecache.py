"""The image cache's bookkeeping: a checksum per entry, least-recently-used eviction under a
size limit, and what ``hotremove cache list/clear`` show and remove (docs/image-cache.md).

An entry is a cached image ``TYPE-KEY.img`` (made once per set of filesystem parameters, see
:func:`hotremove.workload.images.cached_image`), its block maps ``TYPE-KEY.maps.npz`` and its
record ``TYPE-KEY.sum.json``: the CRC-32 of both files and their identity (size, inode,
ctime) when the checksum was taken. On every use the identity is compared; any write to a
file — even one that puts its mtime back — changes its ctime, so a changed identity means
the checksum is computed again: a damaged entry (a mismatch) is removed and made afresh
instead of failing every later run's verification. The record's mtime is the entry's last
use; past the limit (``HOTREMOVE_CACHE_LIMIT``, default :data:`DEFAULT_LIMIT`) the entries
used least recently are removed, never one used in the last :data:`RECENT` seconds (another
run — a sweep's worker — may be reading it).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from hotremove.errors import HotremoveError

log = structlog.get_logger("hotremove.workload")

#: the cache's size limit unless ``HOTREMOVE_CACHE_LIMIT`` says otherwise
DEFAULT_LIMIT = 4 << 30
#: an entry used this recently is never evicted (a concurrent run may be reading it)
RECENT = 60.0
_CHUNK = 8 << 20


@dataclass(frozen=True)
class Entry:
    """One cached image and what goes with it."""

    image: Path
    bytes: int  # on disk (the images are sparse): image, maps and record
    last_used: float  # seconds since the epoch
    recorded: bool  # has a checksum record

    @property
    def name(self) -> str:
        return self.image.name


def maps_of(image: Path) -> Path:
    return image.with_suffix(".maps.npz")


def record_of(image: Path) -> Path:
    return image.with_suffix(".sum.json")


def cache_limit() -> int:
    """``HOTREMOVE_CACHE_LIMIT`` (a size: ``"8GiB"``, ``0`` keeps nothing), else
    :data:`DEFAULT_LIMIT`."""
    from hotremove.scenario import parse_size

    value = os.environ.get("HOTREMOVE_CACHE_LIMIT")
    if not value:
        return DEFAULT_LIMIT
    try:
        return parse_size(value)
    except ValueError as exc:
        raise HotremoveError(f"HOTREMOVE_CACHE_LIMIT: {exc}") from None


def check_cache_dir(cache: Path) -> Path:
    """The cache directory, or one line saying why it cannot be one (a file on the way, or a
    symlink: ``cache clear`` would remove images from wherever it points)."""
    if cache.is_symlink():
        raise HotremoveError(
            f"HOTREMOVE_CACHE: {cache} is a symlink (to {os.readlink(cache)}); the image cache "
            "must be a directory of its own"
        )
    for part in (cache, *cache.parents):
        if part.exists():
            if not part.is_dir():
                raise HotremoveError(
                    f"HOTREMOVE_CACHE: {part} is not a directory (the image cache goes in {cache})"
                )
            break
    return cache


def _identity(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_ino, st.st_ctime_ns]


def _crc(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            crc = 0
            while chunk := f.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
            return crc
    except OSError:
        return None


def _files(image: Path) -> dict[str, Path]:
    return {"image": image, "maps": maps_of(image)}


def record(image: Path) -> None:
    """Take the entry's checksum now (it was just made, or its maps written)."""
    out: dict[str, object] = {}
    for role, path in _files(image).items():
        out[role] = {"crc32": _crc(path), "identity": _identity(path)}
    target = record_of(image)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=image.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(out, f)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def intact(image: Path) -> bool:
    """Whether the cached entry is what was recorded: cheaply, by the files' identity, and
    by their checksum when that changed. An entry without a record (made by an older
    hotremove) is taken as it is and recorded."""
    try:
        saved = json.loads(record_of(image).read_text())
        roles = {
            role: (saved[role]["crc32"], saved[role]["identity"]) for role in ("image", "maps")
        }
    except FileNotFoundError:
        if image.exists():
            record(image)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False  # a damaged record: the entry cannot be trusted
    changed = False
    for role, path in _files(image).items():
        crc, identity = roles[role]
        if _identity(path) == identity:
            continue
        if _crc(path) != crc:
            log.warning("image_cache_damaged", image=str(image), file=path.name)
            return False
        changed = True  # same bytes, another identity (copied back, touched): fine
    if changed:
        record(image)
    return True


def forget(image: Path) -> None:
    """Remove an entry: its image, maps and record."""
    for path in (image, maps_of(image), record_of(image)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def used(image: Path, *, changed: bool) -> None:
    """The entry served a run: record it (``changed``: it was made or its maps written),
    mark it as used now, and keep the cache under its limit."""
    if changed or not record_of(image).exists():
        record(image)
    else:
        with contextlib.suppress(OSError):
            os.utime(record_of(image))
    evict(image.parent, cache_limit(), keep={image})


def entries(cache: Path) -> list[Entry]:
    """Every entry of the cache, least recently used first."""
    out = []
    try:
        images = sorted(cache.glob("*.img"))
    except OSError:
        return []
    for image in images:
        total = 0
        for path in (image, maps_of(image), record_of(image)):
            with contextlib.suppress(OSError):
                total += path.stat().st_blocks * 512
        rec = record_of(image)
        try:
            last = rec.stat().st_mtime
            recorded = True
        except OSError:
            last = image.stat().st_mtime if image.exists() else 0.0
            recorded = False
        out.append(Entry(image, total, last, recorded))
    return sorted(out, key=lambda e: e.last_used)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def evict(cache: Path, limit: int, *, keep: set[Path] = frozenset()) -> list[Entry]:  # type: ignore[assignment]
    """Remove the least recently used entries until the cache holds at most ``limit``
    bytes (never those in ``keep``, nor one used in the last :data:`RECENT` seconds)."""
    all_entries = entries(cache)
    total = sum(e.bytes for e in all_entries)
    removed = []
    now = time.time()
    for entry in all_entries:
        if total <= limit:
            break
        if entry.image in keep or now - entry.last_used < RECENT:
            continue
        forget(entry.image)
        total -= entry.bytes
        removed.append(entry)
    if removed:
        log.info("image_cache_evicted", entries=len(removed), bytes=sum(e.bytes for e in removed))
    return removed


def clear(cache: Path) -> list[Entry]:
    """Remove every entry the cache made — a regular image with its checksum record — (and
    temporary files a killed run left), nothing else: an ``.img`` without a record may be
    someone's own file."""
    gone = [e for e in entries(cache) if e.recorded and _regular(e.image)]
    for entry in gone:
        forget(entry.image)
    with contextlib.suppress(OSError):
        for stray in cache.glob(".*.tmp"):
            stray.unlink()
        for stray in cache.glob(".*.npz"):
            stray.unlink()
    return gone


__all__ = [
    "DEFAULT_LIMIT",
    "Entry",
    "cache_limit",
    "check_cache_dir",
    "clear",
    "entries",
    "evict",
    "forget",
    "intact",
    "record",
    "used",
]
