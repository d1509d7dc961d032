"""Periodic writeback: the flusher thread (mm/page-writeback.c, fs/fs-writeback.c).

``wb_workfn`` wakes every ``vm.dirty_writeback_centisecs`` (``wb_check_old_data_flush``) and
writes back the inodes dirtied longer ago than ``vm.dirty_expire_centisecs``; 0 switches the
periodic wakeup off (what the real-kernel measurements did, so that nothing cleaned the pages
behind the offline's back). A data-journalled file's pages are written by its journal's
``writepages``: only committed buffers go home, and their journal heads stay until jbd2 cleans
its checkpoint list (see :mod:`hotremove.fs.jbd2`).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from hotremove.mm.page_writeback import sync_mapping
from hotremove.model.machine import Machine

log = structlog.get_logger("hotremove.fs.fs_writeback")


@dataclass(eq=False)
class Flusher:
    machine: Machine
    #: seconds between wakeups (``dirty_writeback_centisecs`` / 100); 0: periodic writeback off
    interval: float
    #: dirty data older than this is written (``dirty_expire_centisecs`` / 100)
    expire: float
    wakeups: int = 0

    def arm(self) -> None:
        """``wb_wakeup_delayed``: the next wakeup, one interval from now."""
        if self.interval > 0:
            self.machine.timers.add_timer(
                self.machine.clock.now + self.interval, "flush", self.wb_workfn
            )

    def wb_workfn(self) -> None:
        """Write every expired dirty file, then sleep for another interval."""
        self.wakeups += 1
        machine = self.machine
        now = machine.clock.now
        written = 0
        for mapping in machine.mappings:
            when = mapping.dirtied_when
            if when is None or not mapping.dirty_tags or when + self.expire > now:
                continue
            journal = mapping.host.i_sb.s_journal
            try:
                if mapping.a_ops.journalled_data and hasattr(journal, "writepages"):
                    slots = mapping.i_pages
                    pages = [slots[i] for i in slots.cached(mapping.dirty_tags).tolist()]
                    written += journal.writepages(mapping, pages)
                else:
                    cached = len(mapping.i_pages.cached(mapping.dirty_tags))
                    sync_mapping(machine.memory.frames, mapping)
                    written += cached
            except OSError as exc:  # the pages stay dirty: the next wakeup writes them again
                log.warning("flusher_write_failed", file=mapping.host.path, error=str(exc))
            if not mapping.dirty_tags:
                mapping.dirtied_when = None
        if written:
            machine.vmstat.nr_flushed += written
            log.info("flusher_wrote", pages=written, at=round(now, 3))
        self.arm()


def start_flusher(machine: Machine, writeback_centisecs: int, expire_centisecs: int) -> Flusher:
    """Arm the flusher with the scenario's ``[kernel]`` sysctls."""
    flusher = Flusher(machine, writeback_centisecs / 100, expire_centisecs / 100)
    flusher.arm()
    return flusher
