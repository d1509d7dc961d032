"""Kernel timers on the simulated clock: jbd2's commit timer, the flusher's wakeups. Their
work is a kernel thread's, running beside the migrating task: its I/O is background time.

``add_timer`` (``mod_timer``) files a callback for a simulated time; ``run_timers`` runs every
callback that is due (a callback may file the next one, as a periodic kernel thread does).
The engine runs them whenever the migrating task would sleep, and — when nothing can change
before the next one — skips the clock ahead to it instead of spinning (``idle_until``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from hotremove.model.cost import SimClock


@dataclass
class Timers:
    clock: SimClock
    _heap: list[tuple[float, int, str, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def add_timer(self, when: float, name: str, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), name, fn))

    def next_expiry(self) -> float | None:
        """When the next timer fires (None: none pending)."""
        return self._heap[0][0] if self._heap else None

    def pending(self) -> list[tuple[float, str]]:
        return sorted((when, name) for when, _, name, _ in self._heap)

    def run_timers(self) -> int:
        """Run every timer due by now, in order; returns how many ran."""
        ran = 0
        while self._heap and self._heap[0][0] <= self.clock.now:
            _, _, _, fn = heapq.heappop(self._heap)
            self.clock.in_background = True  # a kernel thread's I/O, not the task's
            try:
                fn()
            finally:
                self.clock.in_background = False
            ran += 1
        return ran

    def idle_until(self, when: float) -> None:
        """Let simulated time pass until ``when``, running the timers that fire meanwhile
        (each at its own time: a timer's work can move the clock, e.g. by its I/O)."""
        while self._heap and self._heap[0][0] <= when:
            due = self._heap[0][0]
            if due > self.clock.now:
                self.clock.cpu_seconds += due - self.clock.now
            self.run_timers()
        if when > self.clock.now:
            self.clock.cpu_seconds += when - self.clock.now
