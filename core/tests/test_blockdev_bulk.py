"""``BlockDevice.submit_writes`` (many requests in one call: what the flusher's
``sync_mapping`` issues) leaves what one ``submit_write`` per request leaves: the same image
bytes, counts, request sizes (in the same order), and the same simulated clock to the last
bit — the task's or, in a kernel thread, the background's. ``XArray.cached`` is the sorted
``in`` filter the flusher used per tag."""

from __future__ import annotations

import numpy as np
import pytest

from hotremove.model.address_space import XArray
from hotremove.model.blockdev import BlockDevice, IOStats
from hotremove.model.cost import PRESETS, SimClock
from hotremove.model.page import MemMap, Page

BS = 1024
NBLOCKS = 4096


def requests(seed: int) -> tuple[list[int], list[int], np.ndarray]:
    """Runs of 1-6 blocks at increasing, sometimes adjacent (unmerged) block numbers."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, 300)
    gaps = rng.integers(0, 5, 300)
    starts = (np.cumsum(lengths + gaps) - lengths).tolist()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    data = rng.integers(0, 256, (bounds[-1], BS), dtype=np.uint8)
    return starts, bounds, data


def device(tmp_path, name: str, clock: SimClock, source=None) -> tuple[BlockDevice, IOStats]:
    stats = IOStats()
    path = tmp_path / name
    if source is None:
        path.write_bytes(bytes(NBLOCKS * BS))
    return BlockDevice(path, BS, PRESETS["ide-2004"], clock, stats, source=source), stats


@pytest.mark.parametrize("background", [False, True], ids=["task", "kernel-thread"])
@pytest.mark.parametrize("queued", [False, True], ids=["sync", "queued"])
def test_submit_writes_is_one_submit_write_per_request(tmp_path, queued, background):
    starts, bounds, data = requests(7)
    source = tmp_path / "cached.img"
    source.write_bytes(np.random.default_rng(1).bytes(NBLOCKS * BS))
    results = []
    for bulk in (True, False):
        clock = SimClock(cpu_seconds=0.25, io_seconds=1 / 3, in_background=background)
        bdev, stats = device(tmp_path, f"img-{bulk}", clock, source=source)
        if bulk:
            assert bdev.submit_writes(starts, bounds, data, queued=queued) == len(starts)
        else:
            for start, a, b in zip(starts, bounds[:-1], bounds[1:], strict=True):
                bdev.submit_write(start, data[a:b].tobytes(), queued=queued)
        assert bdev.source is None, "the first write gave the device its own image"
        bdev.close()
        results.append(
            (
                (tmp_path / f"img-{bulk}").read_bytes(),
                vars(stats).copy(),
                vars(bdev.stats).copy(),
                list(stats.write_sizes.items()),  # insertion order too
                (clock.io_seconds, clock.background_io_seconds),  # exact, not approx
            )
        )
    assert results[0] == results[1]
    assert results[0][1]["write_requests"] == len(starts)


def test_submit_writes_refuses_a_fault_injector_and_ragged_rows(tmp_path):
    starts, bounds, data = requests(3)
    bdev, _ = device(tmp_path, "img", SimClock())
    with pytest.raises(ValueError):
        bdev.submit_writes(starts, bounds, data[:, :512])
    bdev.fault = lambda: False
    with pytest.raises(AssertionError):
        bdev.submit_writes(starts, bounds, data)
    bdev.close()


def test_xarray_cached_is_the_sorted_in_filter():
    mm = MemMap(64, None)
    xa = XArray()
    for index, pfn in ((3, 1), (9, 2), (40, 3), (0, 4)):
        xa[index] = Page(mm, pfn)
    del xa[9]
    tags = {0, 5, 9, 40, 41, 1000}
    assert xa.cached(tags).tolist() == sorted(i for i in tags if i in xa) == [0, 40]
    assert xa.cached(set()).tolist() == []
    assert xa.present(np.array([3, 9, 10**6])).tolist() == [True, False, False]
