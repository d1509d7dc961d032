"""Real filesystem images for a scenario: deterministic file contents, the image made by its
filesystem type's own tools (``FilesystemType.make_image``), and a cache of images (and their
block maps) keyed by every input that shapes them."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from hotremove.fs.fstype import FilesystemType
from hotremove.scenario import FilesystemConfig
from hotremove.workload import imagecache


class GeneratedFiles(Mapping[str, bytearray]):
    """Deterministic file bytes: equal scenario, equal files (so images can be cached). Each
    file is made when asked for, from its own place in the generator's stream
    (``PCG64.advance``), so no caller has to hold every file at once: the image is written
    one file at a time and the golden model makes a file again when verification needs it."""

    def __init__(self, seed: int, fs_index: int, cfg: FilesystemConfig) -> None:
        self.seed = (seed, fs_index)
        self.file_size = cfg.file_size
        self.words = -(-cfg.file_size // 8)  # raw 64-bit draws: ~5× faster than bytes()
        self.paths = [f"f{i:05d}" for i in range(cfg.files)]
        self._index = {path: i for i, path in enumerate(self.paths)}

    def __getitem__(self, path: str) -> bytearray:
        bits = np.random.PCG64(np.random.SeedSequence([*self.seed, 0xF11E]))
        bits.advance(self._index[path] * self.words)
        raw = memoryview(bits.random_raw(self.words)).cast("B")
        return bytearray(raw[: self.file_size])

    def maker(self, path: str) -> Callable[[], bytearray]:
        """``lambda: files[path]`` for the golden model, without a lambda per file."""
        return partial(self.__getitem__, path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def file_contents(seed: int, fs_index: int, cfg: FilesystemConfig) -> GeneratedFiles:
    """The files of filesystem ``fs_index`` (see :class:`GeneratedFiles`)."""
    return GeneratedFiles(seed, fs_index, cfg)


def cached_image(
    cache: Path | None,
    image: Path,
    cfg: FilesystemConfig,
    seed: int,
    fs_index: int,
    files: Mapping[str, bytearray],
    fs_type: FilesystemType,
) -> tuple[Path | None, dict[str, list[int]], int]:
    """``fs_type.make_image`` at ``image``, or an identical image made before: the key covers
    every input of the image (filesystem settings, seed, position, the type's
    ``image_format()`` — its tools' output format). Returns the cached image to share
    copy-on-write (None: ``image`` was made in place), the files' block maps and the
    journal's size in blocks (read once from the image, then kept next to the cached
    image)."""
    if cache is None:
        fs_type.make_image(image, cfg, files)
        maps = _block_maps(fs_type, image, cfg, list(files))
        return None, maps, fs_type.journal_blocks(image, cfg)
    key = hashlib.sha256(
        json.dumps(
            [IMAGE_FORMAT, fs_type.image_format(), cfg.model_dump(), seed, fs_index],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:24]
    cached = cache / f"{cfg.type}-{key}.img"
    maps_file = cached.with_suffix(".maps.npz")
    if cached.exists() and not imagecache.intact(cached):  # damaged: made again, not trusted
        imagecache.forget(cached)
    changed = not cached.exists()
    if changed:
        cache.mkdir(parents=True, exist_ok=True)
        maps_file.unlink(missing_ok=True)
        fs_type.make_image(cached, cfg, files)
    paths = list(files)
    try:
        with np.load(maps_file) as saved:
            # every map laid end to end, in the files' order: three arrays, not one per file
            # (parsing thousands of .npy headers cost more than reading the maps)
            blocks, ends = saved[BLOCKS_KEY].tolist(), saved[ENDS_KEY].tolist()
            journal = int(saved[JOURNAL_KEY][0])
        if len(ends) != len(paths):
            raise ValueError("maps of other files")
        starts = [0, *ends[:-1]]
        maps = {path: blocks[a:b] for path, a, b in zip(paths, starts, ends, strict=True)}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # absent, old or torn
        changed = True
        maps = _block_maps(fs_type, cached, cfg, paths)
        journal = fs_type.journal_blocks(cached, cfg)
        # a name of its own: a sweep's workers may fill the same cache entry at once
        tmp = maps_file.with_name(f".{maps_file.stem}.{os.getpid()}.{secrets.token_hex(4)}.npz")
        lengths = [len(maps[path]) for path in paths]
        np.savez(
            tmp,
            **{
                BLOCKS_KEY: np.asarray([b for path in paths for b in maps[path]], np.int64),
                ENDS_KEY: np.cumsum(np.asarray(lengths, np.int64)),
                JOURNAL_KEY: np.asarray([journal], np.int64),
            },
        )
        try:
            os.replace(tmp, maps_file)
        finally:
            tmp.unlink(missing_ok=True)
    if changed:  # the checksum of a new entry reads it whole: overlapped with the build
        _RECORDS.append(_RECORDER.submit(imagecache.used, cached, changed=True))
    else:
        imagecache.used(cached, changed=False)  # last use, the size limit
    return cached, maps, journal


#: checksums of new cache entries being taken (``zlib.crc32`` releases the GIL): the build
#: reads the page cache meanwhile and waits for them at its end (:func:`wait_for_records`)
_RECORDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-record")
_RECORDS: list[Future[None]] = []


def wait_for_records() -> None:
    """Wait until every new cache entry is recorded (its errors raised here)."""
    while _RECORDS:
        _RECORDS.pop(0).result()


def _block_maps(
    fs_type: FilesystemType, image: Path, cfg: FilesystemConfig, paths: list[str]
) -> dict[str, list[int]]:
    """Every file's block map, as the image's metadata records it (``map_files``)."""
    return {path: list(fmap.blocks) for path, fmap in fs_type.map_files(image, cfg, paths).items()}


#: the keys of a cached image's maps file: every file's block map end to end, where each
#: map ends, and the journal's size
BLOCKS_KEY, ENDS_KEY, JOURNAL_KEY = "blocks", "ends", "journal"

#: bump when the image for equal inputs changes on the core's side (file_contents, the key);
#: a type's own changes are its ``image_format()``
IMAGE_FORMAT = 2


def default_image_cache() -> Path:
    """``$HOTREMOVE_CACHE/images``, else ``$XDG_CACHE_HOME/hotremove/images``."""
    base = os.environ.get("HOTREMOVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hotremove"
    )
    return Path(base) / "images"
