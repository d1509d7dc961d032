"""Cached images are shared copy-on-write: a run never changes the cache, the machine gets
its own image at the first write (or when verified), and what is verified is that image."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hotremove.mm.memory_block import offline
from hotremove.model.migrate_mode import MigrateMode
from hotremove.sim.verify import verify
from hotremove.testing import small_scenario
from hotremove.workload import build


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_runs_share_the_cached_image_and_never_write_it(tmp_path, hotremove_plugins):
    hooks = hotremove_plugins.hooks
    cache = tmp_path / "cache"
    # Linux 6.12: forced writeback writes the dirty pages (7.2's fallback refuses them)
    scenario = small_scenario(
        {"type": "ext2", "block_size": 1024}, strategy="writeback", kernel="6.12"
    )
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

    (maps_file,) = cache.glob("*.maps.npz")
    saved = maps_file.stat()
    second = build(scenario, hooks, tmp_path / "b", image_cache=cache)
    again = maps_file.stat()
    assert (again.st_ino, again.st_mtime_ns) == (saved.st_ino, saved.st_mtime_ns), (
        "the second build read the cached block maps (no debugfs, no rewrite)"
    )
    assert {k: v.i_pages.keys() for k, v in enumerate(second.machine.mappings)} == {
        k: v.i_pages.keys() for k, v in enumerate(first.machine.mappings)
    }
    result = offline(second.machine, hooks, [1], mode=MigrateMode.SYNC, policy="auto")
    assert result.offlined and not second.images["fs0"].exists(), "rebinding wrote nothing"
    assert verify(second, hooks).ok, "verification materialises the image and checks it"
    assert second.images["fs0"].exists() and digest(cached) == pristine
    first.machine.close()
    second.machine.close()


SMALL = """
[memory]
size = "32MiB"
block_size = "8MiB"

[[filesystem]]
name = "data"
type = "ext2"
block_size = 1024
size = "8MiB"
files = 16
file_size = "32KiB"

[workload]
seed = 3
dirty = 0.5

[remove]
blocks = [1]
strategy = "writeback"

[kernel]
version = "6.12"  # its fallback writes the dirty pages out (7.2's refuses them)
"""


def test_the_run_command_takes_its_images_from_the_cache_and_never_writes_it(tmp_path):
    """``hotremove run`` builds from the image cache (``$HOTREMOVE_CACHE/images``): the first
    run makes the image there, every run writes back into its own copy; ``--keep-images``
    makes real images in its directory and leaves the cache alone."""
    import json

    from .conftest import invoke

    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL)
    env = {"HOTREMOVE_CACHE": str(tmp_path / "cache")}
    cache = tmp_path / "cache" / "images"

    first = invoke("run", scenario, "--json", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout)
    assert report["verify"]["ok"] and report["written_back"] > 0, "the run wrote to its image"
    (cached,) = cache.glob("*.img")
    pristine = digest(cached)
    second = invoke("run", scenario, "--json", env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["verify"]["ok"]
    assert list(cache.glob("*.img")) == [cached] and digest(cached) == pristine

    keep = tmp_path / "kept"
    kept = invoke("run", scenario, "--json", "--keep-images", keep, env=env)
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert (keep / "data.img").is_file() and digest(keep / "data.img") != pristine
    assert list(cache.glob("*.img")) == [cached] and digest(cached) == pristine


def test_an_image_copy_started_early_serves_the_first_write(tmp_path, hotremove_plugins):
    """``start_image_copies`` (what ``run`` does before the offline) copies in the
    background; the first write waits for that copy, the cache is never written, and a
    machine closed before anyone needed its copy leaves no temporary file."""
    hooks = hotremove_plugins.hooks
    cache = tmp_path / "cache"
    # Linux 6.12: forced writeback writes the dirty pages (7.2's fallback refuses them)
    scenario = small_scenario(
        {"type": "ext2", "block_size": 1024}, strategy="writeback", kernel="6.12"
    )
    built = build(scenario, hooks, tmp_path / "a", image_cache=cache)
    (cached,) = cache.glob("*.img")
    pristine = digest(cached)
    built.machine.start_image_copies()
    result = offline(built.machine, hooks, [1], mode=MigrateMode.SYNC, policy="writeback")
    assert result.offlined and result.written_back
    assert verify(built, hooks).ok
    assert digest(cached) == pristine
    assert digest(built.images["fs0"]) != pristine, "the writes went to the machine's copy"

    unused = build(scenario, hooks, tmp_path / "b", image_cache=cache)
    unused.machine.start_image_copies()
    unused.machine.close()
    assert not list((tmp_path / "b").glob(".*.tmp")), "no temporary copy left behind"
    assert not unused.images["fs0"].exists()
