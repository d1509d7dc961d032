"""The plugin author's test kit: helpers, a strategy probe and the :class:`ConformanceSuite`.

* :mod:`hotremove.testing.fixtures` — pytest fixtures, registered through the ``pytest11``
  entry point (fixtures only, nothing autouse);
* :mod:`hotremove.testing.helpers` — scenarios, snapshots, engine runs, strict plugin sets,
  hook-call recording, captured log events;
* :mod:`hotremove.testing.probe` — every strategy call of a run, checked against the contract;
* :mod:`hotremove.testing.conformance` — the suite a plugin's tests subclass (its checks live
  in :mod:`~hotremove.testing.contract`, its cases and capabilities in
  :mod:`~hotremove.testing.cases`);
* :mod:`hotremove.testing.isolated` — a temporary virtualenv to install packages into.

Imports are lazy: ``import hotremove.testing`` (which pytest does at start-up for the fixtures)
loads nothing heavy, and the helpers are imported after pytest registered them for assertion
rewriting. Everything builds *real* machines over *real* images; nothing is mocked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConformanceError": "helpers",
    "EngineRun": "helpers",
    "HookCall": "helpers",
    "HookRecorder": "helpers",
    "CachedPage": "helpers",
    "assert_clean_result": "helpers",
    "block_map_problems": "helpers",
    "capture_events": "helpers",
    "find_lockdep": "helpers",
    "rebinding_problems": "helpers",
    "run_offline": "helpers",
    "small_scenario": "helpers",
    "cached_pages_before": "helpers",
    "strict_plugins": "helpers",
    "StrategyCall": "probe",
    "StrategyProbe": "probe",
    "Case": "conformance",
    "ConformanceSuite": "conformance",
    # the 0.1 names of cached_pages_before / CachedPage
    "snapshot_region": "helpers",
    "PageSnapshot": "helpers",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hotremove.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hotremove.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from hotremove.testing.conformance import Case, ConformanceSuite
    from hotremove.testing.helpers import (
        CachedPage,
        ConformanceError,
        EngineRun,
        HookCall,
        HookRecorder,
        assert_clean_result,
        block_map_problems,
        cached_pages_before,
        capture_events,
        find_lockdep,
        rebinding_problems,
        run_offline,
        small_scenario,
        strict_plugins,
    )
    from hotremove.testing.probe import StrategyCall, StrategyProbe

__all__ = [
    "CachedPage",
    "Case",
    "ConformanceError",
    "ConformanceSuite",
    "EngineRun",
    "HookCall",
    "HookRecorder",
    "StrategyCall",
    "StrategyProbe",
    "assert_clean_result",
    "block_map_problems",
    "cached_pages_before",
    "capture_events",
    "find_lockdep",
    "rebinding_problems",
    "run_offline",
    "small_scenario",
    "strict_plugins",
]
