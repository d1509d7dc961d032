"""Real filesystem images for a scenario: deterministic file contents, ``mke2fs -d``, and a
cache of images (and their block maps) keyed by every input that shapes them."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

from hotremove.extfs import block_maps, journal_blocks, make_image
from hotremove.scenario import FilesystemConfig


def file_contents(seed: int, fs_index: int, cfg: FilesystemConfig) -> dict[str, bytearray]:
    """Deterministic file bytes: equal scenario, equal files (so images can be cached). The
    builder hands these very buffers to the golden model once the page cache is filled."""
    rng = np.random.default_rng([seed, fs_index, 0xF11E])
    words = -(-cfg.file_size // 8)  # raw 64-bit draws: ~5× faster than Generator.bytes
    return {
        f"f{i:05d}": bytearray(
            memoryview(rng.bit_generator.random_raw(words)).cast("B")[: cfg.file_size]
        )
        for i in range(cfg.files)
    }


def cached_image(
    cache: Path | None,
    image: Path,
    cfg: FilesystemConfig,
    seed: int,
    fs_index: int,
    files: dict[str, bytearray],
) -> tuple[Path | None, dict[str, list[int]], int]:
    """``make_image`` at ``image``, or an identical image made before: the key covers every
    input of the image (filesystem settings, seed, position, e2fsprogs' output format).
    Returns the cached image to share copy-on-write (None: ``image`` was made in place), the
    files' block maps and the journal's size in blocks (read once with debugfs, then kept next
    to the cached image)."""
    data_mode = cfg.data_mode if cfg.type != "ext2" else None
    journalled = cfg.type != "ext2"
    if cache is None:
        make_image(image, cfg.type, cfg.block_size, cfg.size, files, data_mode=data_mode)
        return None, block_maps(image, list(files)), journal_blocks(image) if journalled else 0
    key = hashlib.sha256(
        json.dumps([IMAGE_FORMAT, cfg.model_dump(), seed, fs_index], sort_keys=True).encode()
    ).hexdigest()[:24]
    cached = cache / f"{cfg.type}-{key}.img"
    maps_file = cached.with_suffix(".maps.npz")
    if not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        maps_file.unlink(missing_ok=True)
        make_image(cached, cfg.type, cfg.block_size, cfg.size, files, data_mode=data_mode)
    try:
        with np.load(maps_file) as saved:
            maps = {path: saved[path].tolist() for path in files}
            journal = int(saved[JOURNAL_KEY][0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # absent, old or torn
        maps = block_maps(cached, list(files))
        journal = journal_blocks(cached) if journalled else 0
        # a name of its own: a sweep's workers may fill the same cache entry at once
        tmp = maps_file.with_name(f".{maps_file.stem}.{os.getpid()}.{secrets.token_hex(4)}.npz")
        arrays = {path: np.asarray(blocks, np.int64) for path, blocks in maps.items()}
        np.savez(tmp, **arrays, **{JOURNAL_KEY: np.asarray([journal], np.int64)})
        os.replace(tmp, maps_file)
    return cached, maps, journal


#: the key of the journal's size in a cached image's maps file (no file is named so)
JOURNAL_KEY = "<journal>"

IMAGE_FORMAT = 2  # bump when the image for equal inputs changes (make_image, file_contents)


def default_image_cache() -> Path:
    """``$HOTREMOVE_CACHE/images``, else ``$XDG_CACHE_HOME/hotremove/images``."""
    base = os.environ.get("HOTREMOVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hotremove"
    )
    return Path(base) / "images"
