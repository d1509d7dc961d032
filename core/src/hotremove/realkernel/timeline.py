"""The guest's clock for the simulator: ``kernel diff`` runs the scenario as the guest ran it.

Under QEMU's emulation a guest ``write()`` takes 15–40 ms, so the write phase of a few
thousand writes lasts a minute and jbd2's 5 s commit timer fires many times during it; with
a journal smaller than the dirty data, where those commits fall decides which transactions
are checkpointed before the offline (:mod:`hotremove.fs.jbd2_checkpoint`). The simulator is
therefore given the guest's measured write phase and the wait before the offline.
"""

from __future__ import annotations

from typing import Any

from hotremove.realkernel.report import GuestReport


def _has(section: Any, key: str) -> bool:
    """The scenario schema has ``key`` in ``section`` (another schema may not)."""
    return key in getattr(type(section), "model_fields", {})


def on_guest_timeline(scenario: Any, real: GuestReport) -> tuple[Any, dict[str, float]]:
    """``scenario`` on the guest's clock: its writes took ``workload.write_seconds`` and the
    offline began ``remove.start`` seconds after them, as the guest measured. Returns the
    scenario and the values set (none for a schema without those keys)."""
    times = real.times
    overrides: dict[str, dict[str, float]] = {}
    timeline: dict[str, float] = {}
    if "write_seconds" in times and _has(getattr(scenario, "workload", None), "write_seconds"):
        timeline["write_seconds"] = float(times["write_seconds"])
        overrides["workload"] = {"write_seconds": timeline["write_seconds"]}
    if "idle_seconds" in times and _has(getattr(scenario, "remove", None), "start"):
        timeline["start"] = max(float(times["idle_seconds"]), 0.0)
        overrides["remove"] = {"start": timeline["start"]}
    return (scenario.with_overrides(**overrides) if overrides else scenario), timeline


__all__ = ["on_guest_timeline"]
