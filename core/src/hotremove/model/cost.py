"""Device presets and simulated time: what a strategy costs on a given machine.

Simulated time = CPU work (page copies at the era's memcpy rate) + device time per request
(seek + rotational latency + transfer). Figures and where they come from:

* ``ide-2004``: a 7200 rpm ATA disk of the seed's time — about 8.5 ms average seek and
  4.2 ms average rotational latency (half a turn at 7200 rpm), about 58 MB/s sustained, which
  gives ≈ 12.7 ms per random 4 KiB write (vendor datasheets of 2003–2004 desktop drives, as
  summarised in shared/kernel-reference.md "Costs worth knowing"). Memory copy on a Pentium 4
  of the time: 1.3–2.3 GB/s → 1.6 GB/s here (≈ 2.6 µs per 4 KiB page).
* ``sata-ssd``: a SATA III flash drive — ≈ 60 µs per random write at queue depth 1 and
  ≈ 520 MB/s sequential (typical consumer datasheet figures; SATA 6 Gb/s caps near 550 MB/s);
  NCQ keeps 32 requests in flight, so queued writes overlap their latency.
* ``nvme``: a PCIe 4.0 NVMe drive — ≈ 20 µs per random write at queue depth 1, ≈ 3 GB/s;
  64 queued requests overlap.
  The two modern presets copy pages at 7 GB/s, what this project's 2-core machine measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotremove.errors import ScenarioError


@dataclass(frozen=True)
class DevicePreset:
    """The cost of one block-device request and of copying memory on one kind of machine."""

    name: str
    seek_s: float
    rotational_s: float
    bandwidth_bps: float
    memcpy_bps: float
    #: requests the device works on at once: queued writes overlap their latency (an ATA disk
    #: of 2004 had no command queueing; SATA NCQ takes 32, an NVMe queue far more)
    queue_depth: int = 1

    def request_seconds(self, nbytes: int, *, queued: bool = False) -> float:
        """One random request of ``nbytes``: position the head, then transfer. A ``queued``
        request (asynchronous writeback) shares its positioning latency with the others in
        the device's queue."""
        latency = self.seek_s + self.rotational_s
        if queued:
            latency /= self.queue_depth
        return latency + nbytes / self.bandwidth_bps

    def copy_seconds(self, nbytes: int) -> float:
        return nbytes / self.memcpy_bps


PRESETS: dict[str, DevicePreset] = {
    p.name: p
    for p in (
        DevicePreset("ide-2004", 8.5e-3, 4.2e-3, 58e6, 1.6e9),
        DevicePreset("sata-ssd", 60e-6, 0.0, 520e6, 7e9, queue_depth=32),
        DevicePreset("nvme", 20e-6, 0.0, 3e9, 7e9, queue_depth=64),
    )
}


def preset(name: str) -> DevicePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ScenarioError(
            f"device.preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})"
        ) from None


@dataclass
class SimClock:
    """Simulated seconds, split into CPU (copies) and I/O (device requests) of the task being
    measured. Kernel threads (jbd2's commits, the flusher) run in parallel with it: their
    requests go to ``background_io_seconds`` while :attr:`in_background` is set (by the
    timers that run them) and do not move the task's clock."""

    cpu_seconds: float = 0.0
    io_seconds: float = 0.0
    background_io_seconds: float = 0.0
    in_background: bool = False

    @property
    def now(self) -> float:
        return self.cpu_seconds + self.io_seconds

    def charge_io(self, seconds: float) -> None:
        """One device request's time: the task's, or a kernel thread's in the background."""
        if self.in_background:
            self.background_io_seconds += seconds
        else:
            self.io_seconds += seconds
