"""A fuzz case judged as ``kernel diff`` judges a scenario: the simulator on the guest's
timeline (:func:`hotremove.realkernel.timeline.on_guest_timeline`), then the diff's own
rules (:func:`hotremove.realkernel.diff.compare`) — no second judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotremove.realkernel.diff import all_agree, compare
from hotremove.realkernel.report import GuestReport
from hotremove.realkernel.timeline import on_guest_timeline
from hotremove.scenario import Scenario


@dataclass
class Verdict:
    """``status``: ``agree``, ``disagree`` or ``error`` (no guest result: nothing judged)."""

    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    real: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        return [row["metric"] for row in self.rows if not row["agree"]]


def simulate(scenario: Scenario, version: str) -> dict[str, Any]:
    """The simulator's report dict for ``scenario`` on Linux ``version``."""
    from hotremove.sim.runner import run_scenario

    scenario = scenario.with_overrides(kernel={"version": version})
    return run_scenario(scenario, name=f"simulated-{version}").as_dict()


def judge(scenario: Scenario, version: str, real: GuestReport | None, error: str = "") -> Verdict:
    """The verdict on one case's guest run (``real``; None with ``error``: no result)."""
    if real is None:
        return Verdict("error", error=error or "no guest result")
    timed, timeline = on_guest_timeline(scenario, real)
    try:
        sim = simulate(timed, version)
    except Exception as exc:  # the simulator failing on a mirrorable scenario is a finding
        return Verdict("error", error=f"simulator: {type(exc).__name__}: {exc}".splitlines()[0])
    real_dict = real.as_dict()
    rows = compare(sim, real_dict)
    status = "agree" if all_agree(rows) else "disagree"
    return Verdict(status, rows=rows, real=real_dict, timeline=timeline)
