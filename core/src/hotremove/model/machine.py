"""The simulated machine: memory, mounted filesystems, page cache, anonymous memory, clocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hotremove.kernels import DEFAULT_KERNEL, Kernel, get_kernel
from hotremove.model.address_space import AddressSpace, AnonVma, SuperBlock, SwapCache
from hotremove.model.blockdev import IOStats
from hotremove.model.cost import DevicePreset, SimClock
from hotremove.model.locks import Task
from hotremove.model.memory import PhysicalMemory
from hotremove.model.timers import Timers


@dataclass
class VmStat:
    """Event counters in the spirit of /proc/vmstat."""

    pgmigrate_success: int = 0
    pgmigrate_fail: int = 0
    nr_rebound: int = 0  # pages whose buffer_heads moved to the new page
    nr_written_back: int = 0  # pages written out so that they could move
    nr_buffers_freed: int = 0  # pages whose buffers were dropped (try_to_free_buffers)
    nr_flushed: int = 0  # pages the flusher wrote back (periodic writeback)


@dataclass(eq=False)
class Machine:
    memory: PhysicalMemory
    preset: DevicePreset
    clock: SimClock = field(default_factory=SimClock)
    io: IOStats = field(default_factory=IOStats)
    vmstat: VmStat = field(default_factory=VmStat)
    task: Task = field(default_factory=Task)
    superblocks: list[SuperBlock] = field(default_factory=list)
    mappings: list[AddressSpace] = field(default_factory=list)
    anon_vmas: list[AnonVma] = field(default_factory=list)
    swap_cache: SwapCache = field(default_factory=SwapCache)
    #: Who releases what a sleeping task waits for: page or buffer_head → release. In-flight
    #: writeback registers its page and buffers; a buffer locked by another task registers
    #: its unlock. ``task.waiter`` is :meth:`wake`.
    waiters: dict[object, Callable[[], None]] = field(default_factory=dict)
    #: Background work between passes (pin holders finishing, ...): called with the machine.
    daemons: list[Callable[[Machine], None]] = field(default_factory=list)
    #: Extra references held by someone else (a pinned read, get_page elsewhere): id → count.
    pins: dict[object, int] = field(default_factory=dict)
    #: the kernel whose behaviour this machine has (see :mod:`hotremove.kernels`)
    kernel: Kernel = field(default_factory=lambda: get_kernel(DEFAULT_KERNEL))
    #: kernel timers on the simulated clock (jbd2 commits, flusher wakeups)
    timers: Timers = field(init=False)
    #: simulated time the workload's last write ended (``remove.start`` counts from here)
    writes_end: float = 0.0

    def __post_init__(self) -> None:
        self.task.waiter = self.wake
        self.timers = Timers(self.clock)

    def wake(self, obj: object) -> bool:
        """The task sleeps on ``obj``: its holder runs to completion and releases it."""
        release = self.waiters.pop(obj, None)
        if release is None:
            return False
        release()
        return True

    def run_daemons(self) -> None:
        for daemon in list(self.daemons):
            daemon(self)

    def materialise_images(self) -> None:
        """Every device gets its own image file (see BlockDevice.materialise)."""
        for sb in self.superblocks:
            sb.s_bdev.materialise()

    def start_image_copies(self) -> None:
        """Begin every device's image copy in the background (BlockDevice.start_copy)."""
        for sb in self.superblocks:
            sb.s_bdev.start_copy()

    def close(self) -> None:
        """Release the image files (the images themselves stay where the builder put them)
        and the task's link back to the machine, so that dropping the last reference frees
        the frames at once instead of at the next cyclic collection."""
        self.task.waiter = None
        for sb in self.superblocks:
            sb.s_bdev.close()
