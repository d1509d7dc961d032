"""The seeded interleaving explorer: races a migration strategy can have.

The migration (the engine's ``offline()``) runs as one actor among others — a writeback
flusher, ``write()``\\ rs, ext3's kjournald, readers — on a uniprocessor that switches only at
preemption points (every lock operation, I/O, explicit ``preempt()``), chosen by a seeded
scheduler; invariants are checked at every switch and at the end. See docs/explore.md.
"""

from __future__ import annotations

from hotremove.explore.actors import ACTORS
from hotremove.explore.runner import Explorer, ExploreResult, ScheduleResult
from hotremove.explore.scheduler import Finding, ListChooser, RandomChooser, TraceEvent
from hotremove.explore.session import explore_scenario, replay_command

__all__ = [
    "ACTORS",
    "ExploreResult",
    "Explorer",
    "Finding",
    "ListChooser",
    "RandomChooser",
    "ScheduleResult",
    "TraceEvent",
    "explore_scenario",
    "replay_command",
]
