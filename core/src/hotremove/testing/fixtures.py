"""pytest fixtures for hotremove and plugin authors (registered via ``pytest11``).

Fixtures only, nothing autouse: installing hotremove never changes another project's tests.
Heavy modules are imported inside the fixtures, and the kit's helper modules are registered for
assertion rewriting here, before anything imports them.

=========================== ==============================================================
``hotremove_plugins``       the installed plugins (entry points), as the CLI loads them
``hotremove_make_plugins``  ``make(*extra, allow=None, autoload=True)``: a fresh plugin
                            manager in strict mode (any load error fails the test)
``hotremove_build``         ``build(scenario, plugins=None) -> Built`` over real images
``hotremove_machine``       ``machine(*filesystems, plugins=None, **workload) -> Built``:
                            :func:`~hotremove.testing.small_scenario` + build in one call
``hotremove_offline``       ``offline(built, plugins=None, **kw) -> OfflineResult``
``hotremove_run``           ``run(built, plugins=None, **kw) -> EngineRun``: an engine run
                            with every strategy call probed (I/O, sleeps, the contract)
``hotremove_verify``        ``verify(built, plugins=None) -> Verdict``: sync, checker, read back
``hotremove_log_events``    the structlog events logged during the test (a list of dicts)
``hotremove_hook_recorder`` ``record(plugins=None, page_events=True) -> HookRecorder``
=========================== ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite(
    "hotremove.testing.helpers",
    "hotremove.testing.probe",
    "hotremove.testing.cases",
    "hotremove.testing.contract",
    "hotremove.testing.conformance",
)


@pytest.fixture
def hotremove_plugins() -> Any:
    """A fresh plugin manager loaded from the installed entry points."""
    from hotremove.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def hotremove_make_plugins() -> Callable[..., Any]:
    """``make(*extra, allow=None, autoload=True) -> PluginSet`` in strict mode: entry points
    (only ``allow``ed ones, when given) plus ``extra`` ``(name, plugin)`` pairs; a plugin that
    fails to load, implements an unknown hook or claims a taken a_ops fails the test."""
    from hotremove.testing.helpers import strict_plugins

    return strict_plugins


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
def hotremove_machine(hotremove_build: Callable[..., Any]) -> Callable[..., Any]:
    """``machine(*filesystems, plugins=None, **kw) -> Built``: a small scenario (32 MiB, 8 MiB
    blocks, 16 files of 32 KiB per filesystem, block 1 removed) built over real images;
    ``filesystems`` are dicts such as ``{"type": "myfs", "block_size": 1024}``, ``kw`` goes to
    :func:`~hotremove.testing.small_scenario` (``mode=``, ``strategy=``, ``dirty=`` ...)."""
    from hotremove.testing.helpers import small_scenario

    def _machine(*filesystems: dict[str, Any], plugins: Any = None, **kw: Any) -> Any:
        return hotremove_build(small_scenario(*filesystems, **kw), plugins)

    return _machine


@pytest.fixture
def hotremove_offline(hotremove_plugins: Any) -> Callable[..., Any]:
    """``offline(built, **kw) -> OfflineResult`` with the scenario's remove settings."""
    from hotremove.mm.memory_block import offline

    def _offline(built: Any, plugins: Any = None, **kw: Any) -> Any:
        options = built.scenario.offline_kwargs(checks=True)
        options.update(kw)
        return offline(
            built.machine,
            (plugins or hotremove_plugins).hooks,
            list(built.scenario.remove.blocks),
            **options,
        )

    return _offline


@pytest.fixture
def hotremove_run(hotremove_plugins: Any) -> Callable[..., Any]:
    """``run(built, plugins=None, *, mode=None, policy=None, blocks=None) -> EngineRun``: the
    offline with per-step checks, every strategy call probed; see
    :class:`~hotremove.testing.helpers.EngineRun`."""
    from hotremove.testing.helpers import run_offline

    def _run(built: Any, plugins: Any = None, **kw: Any) -> Any:
        return run_offline(built, plugins or hotremove_plugins, **kw)

    return _run


@pytest.fixture
def hotremove_verify(hotremove_plugins: Any) -> Callable[..., Any]:
    """``verify(built) -> Verdict``: sync, the images' checkers, read every file back."""
    from hotremove.sim.verify import verify

    def _verify(built: Any, plugins: Any = None) -> Any:
        return verify(built, (plugins or hotremove_plugins).hooks)

    return _verify


@pytest.fixture
def hotremove_log_events() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event logged during the test, debug level and up, as dicts
    (``{"event": "pass_finished", "log_level": "info", "migrated": 36, ...}``)."""
    from hotremove.testing.helpers import capture_events

    with capture_events() as events:
        yield events


@pytest.fixture
def hotremove_hook_recorder(hotremove_plugins: Any) -> Iterator[Callable[..., Any]]:
    """``record(plugins=None, page_events=True) -> HookRecorder``: from now on, every hook
    call the core makes through that plugin set (default: ``hotremove_plugins``) is recorded
    with its arguments and result; undone at teardown."""
    from hotremove.testing.helpers import HookRecorder

    recorders: list[Any] = []

    def _record(plugins: Any = None, page_events: bool = True) -> Any:
        recorder = HookRecorder((plugins or hotremove_plugins).hooks, page_events).install()
        recorders.append(recorder)
        return recorder

    yield _record
    for recorder in reversed(recorders):
        recorder.uninstall()
