"""pytest fixtures for hotremove and plugin authors (registered via ``pytest11``).

Fixtures only, nothing autouse: installing hotremove never changes another project's tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def hotremove_plugins() -> Any:
    """A fresh plugin manager loaded from the installed entry points."""
    from hotremove.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def hotremove_build(tmp_path: Path, hotremove_plugins: Any) -> Iterator[Callable[..., Any]]:
    """``build(scenario) -> Built``: a machine over real images in ``tmp_path``."""
    from hotremove.workload import build

    built_list: list[Any] = []

    def _build(scenario: Any, plugins: Any = None) -> Any:
        hooks = (plugins or hotremove_plugins).hooks
        built = build(scenario, hooks, tmp_path / f"images{len(built_list)}")
        built_list.append(built)
        return built

    yield _build
    for built in built_list:
        built.machine.close()


@pytest.fixture
def hotremove_offline(hotremove_plugins: Any) -> Callable[..., Any]:
    """``offline(built, **kw) -> OfflineResult`` with the scenario's remove settings."""
    from hotremove.engine import offline
    from hotremove.model.migrate_mode import MigrateMode

    def _offline(built: Any, plugins: Any = None, **kw: Any) -> Any:
        rm = built.scenario.remove
        options = {
            "mode": MigrateMode(rm.mode),
            "policy": rm.strategy,
            "checks": True,
            "max_rounds": rm.max_rounds,
            **kw,
        }
        return offline(
            built.machine, (plugins or hotremove_plugins).hooks, list(rm.blocks), **options
        )

    return _offline


@pytest.fixture
def hotremove_verify(hotremove_plugins: Any) -> Callable[..., Any]:
    """``verify(built) -> Verdict``: sync, e2fsck -fn, read every file back."""
    from hotremove.verify import verify

    def _verify(built: Any, plugins: Any = None) -> Any:
        return verify(built, (plugins or hotremove_plugins).hooks)

    return _verify
