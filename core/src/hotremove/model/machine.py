"""The simulated machine: memory, mounted filesystems, page cache, anonymous memory, clocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from hotremove.cost import DevicePreset, SimClock
from hotremove.model.address_space import AddressSpace, AnonVma, SuperBlock
from hotremove.model.blockdev import IOStats
from hotremove.model.locks import Task
from hotremove.model.memory import PhysicalMemory


@dataclass
class VmStat:
    """Event counters in the spirit of /proc/vmstat."""

    pgmigrate_success: int = 0
    pgmigrate_fail: int = 0
    nr_rebound: int = 0  # pages whose buffer_heads moved to the new page
    nr_written_back: int = 0  # pages written out so that they could move
    nr_buffers_freed: int = 0  # pages whose buffers were dropped (try_to_free_buffers)


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

    def close(self) -> None:
        """Release the image files (the images themselves stay where the builder put them)."""
        for sb in self.superblocks:
            sb.s_bdev.close()
