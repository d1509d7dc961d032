"""Cached images are shared copy-on-write: a run never changes the cache, the machine gets
its own image at the first write (or when verified), and what is verified is that image."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hotremove.engine import offline
from hotremove.model.migrate_mode import MigrateMode
from hotremove.testing import small_scenario
from hotremove.verify import verify
from hotremove.workload import build


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_runs_share_the_cached_image_and_never_write_it(tmp_path, hotremove_plugins):
    hooks = hotremove_plugins.hooks
    cache = tmp_path / "cache"
    scenario = small_scenario({"type": "ext2", "block_size": 1024}, strategy="writeback")
    first = build(scenario, hooks, tmp_path / "a", image_cache=cache)
    (cached,) = cache.glob("*.img")
    assert list(cache.glob("*.maps.npz")), "block maps are cached with the image"
    pristine = digest(cached)
    image = first.images["fs0"]
    assert not image.exists(), "nothing written yet: the cached image is shared"

    result = offline(first.machine, hooks, [1], mode=MigrateMode.SYNC, policy="writeback")
    assert result.offlined and result.written_back
    assert image.exists(), "the first write gave the machine its own image"
    assert verify(first, hooks).ok
    assert digest(cached) == pristine, "the run wrote only to its own copy"
    assert digest(image) != pristine

    second = build(scenario, hooks, tmp_path / "b", image_cache=cache)
    assert {k: v.i_pages.keys() for k, v in enumerate(second.machine.mappings)} == {
        k: v.i_pages.keys() for k, v in enumerate(first.machine.mappings)
    }
    result = offline(second.machine, hooks, [1], mode=MigrateMode.SYNC, policy="auto")
    assert result.offlined and not second.images["fs0"].exists(), "rebinding wrote nothing"
    assert verify(second, hooks).ok, "verification materialises the image and checks it"
    assert second.images["fs0"].exists() and digest(cached) == pristine
    first.machine.close()
    second.machine.close()
