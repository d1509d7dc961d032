"""Test helpers over *real* machines and images: scenarios, snapshots, engine runs, plugin sets,
hook-call recording and captured log events. Nothing here is mocked.

Import through :mod:`hotremove.testing` (``from hotremove.testing import small_scenario``); the
pytest fixtures that wrap these live in :mod:`hotremove.testing.fixtures`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog
from structlog.testing import LogCapture

from hotremove import hookspecs
from hotremove.model.buffer_head import BH_Lock, page_buffers
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import PAGE_SIZE, PG_private
from hotremove.scenario import Scenario, validate

if TYPE_CHECKING:
    from hotremove.hooks import Hooks
    from hotremove.mm.result import OfflineResult
    from hotremove.model.address_space import AddressSpace
    from hotremove.model.blockdev import IOStats
    from hotremove.model.locks import LockViolation
    from hotremove.plugins import PluginSet
    from hotremove.sim.checks import CheckFailure
    from hotremove.testing.probe import Problem, StrategyCall, StrategyProbe
    from hotremove.workload import Built


class ConformanceError(AssertionError):
    """A plugin broke the contract; the message says which plugin, which rule and where."""


def small_scenario(
    *filesystems: dict[str, Any],
    memory: str = "32MiB",
    block_size: str = "8MiB",
    blocks: tuple[int, ...] = (1,),
    mode: str = "sync",
    strategy: str = "auto",
    kernel: str | None = None,
    **workload: Any,
) -> Scenario:
    """A scenario small enough for a unit test (a few hundred pages), spread placement so the
    removed block holds pages of every filesystem. ``kernel``: the simulated version
    (default: the newest)."""
    fs_list = [
        {"name": f"fs{i}", "size": "8MiB", "files": 16, "file_size": "32KiB", **fs}
        for i, fs in enumerate(filesystems or ({},))  # {}: the default type
    ]
    data = {
        "memory": {"size": memory, "block_size": block_size},
        "filesystem": fs_list,
        "workload": {"seed": 7, "dirty": 0.5, **workload},
        "remove": {"blocks": list(blocks), "mode": mode, "strategy": strategy},
    }
    if kernel is not None:
        data["kernel"] = {"version": kernel}
    return validate(data)


@dataclass(frozen=True)
class CachedPage:
    """A cached page before the offline: where it was and what its buffers said."""

    mapping: AddressSpace
    index: int
    pfn: int
    flags: int
    buffers: tuple[tuple[object, int, int], ...]  # (bh, b_blocknr, b_state without BH_Lock)


def cached_pages_before(built: Built, blocks: list[int]) -> list[CachedPage]:
    """Every page-cache page in ``blocks``, with its buffers, before anything moves."""
    memory = built.machine.memory
    shots = []
    for mapping in built.machine.mappings:
        for index, page in mapping.i_pages.items():
            if memory.block_of(page.pfn) in blocks:
                bhs = page_buffers(page) if page.flags & PG_private else []
                shots.append(
                    CachedPage(
                        mapping,
                        index,
                        page.pfn,
                        page.flags,
                        tuple((bh, bh.b_blocknr, bh.b_state & ~BH_Lock) for bh in bhs),
                    )
                )
    return shots


def rebinding_problems(built: Built, shots: list[CachedPage]) -> list[str]:
    """What went wrong for pages that should have moved with their buffers: not moved, a
    buffer that does not point at the new page, a changed block number or state bit."""
    problems = []
    for shot in shots:
        page = shot.mapping.i_pages.get(shot.index)
        if page is None or page.pfn == shot.pfn:
            problems.append(f"{shot.mapping}:{shot.index} did not move")
            continue
        now = page_buffers(page) if page.flags & PG_private else []
        if [bh for bh, _, _ in shot.buffers] != now:
            problems.append(f"{shot.mapping}:{shot.index} buffers were replaced")
            continue
        for bh, blocknr, state in shot.buffers:
            if bh.b_page != page:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} does not point at the new page")
            if bh.b_blocknr != blocknr:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} block changed from {blocknr}")
            if bh.b_state != state:  # type: ignore[attr-defined]
                problems.append(f"{bh!r} state changed from {state:#x}")
    return problems


def block_map_problems(built: Built) -> list[str]:
    """Every cached buffer must map the disk block the file's block map (read from the real
    image) gives for its place in the file."""
    problems = []
    for mapping in built.machine.mappings:
        inode = mapping.host
        bs = inode.i_sb.s_blocksize
        per_page = PAGE_SIZE // bs
        for index, page in mapping.i_pages.items():
            if not page.flags & PG_private:
                continue
            for bh in page_buffers(page):
                lblk = index * per_page + bh.b_offset // bs
                want = inode.block_map[lblk] if lblk < len(inode.block_map) else -1
                if bh.b_blocknr != want:
                    problems.append(
                        f"{mapping!r} page {index}: the buffer at offset {bh.b_offset} maps "
                        f"block {bh.b_blocknr}, the file's block map says {want}"
                    )
                if bh.b_page != page:
                    problems.append(f"{mapping!r} page {index}: {bh!r} points at another page")
    return problems


def assert_clean_result(result: OfflineResult) -> None:
    """The offline completed and every per-step and whole-machine check held."""
    assert result.offlined, f"offline failed: {result.failed[:5]}"
    assert not result.check_failures, result.check_failures[:5]


# -- plugin sets -------------------------------------------------------------------------------


def strict_plugins(
    *extra: tuple[str, object],
    allow: Sequence[str] | None = None,
    autoload: bool = True,
) -> PluginSet:
    """A fresh plugin manager in strict mode: entry points (only ``allow``, when given) plus
    ``extra`` ``(name, plugin)`` pairs; any load, validation or registration error — which
    :func:`hotremove.plugins.load_plugins` only records — raises :class:`ConformanceError`."""
    from hotremove.plugins import load_plugins

    plugins = load_plugins(autoload=autoload, allow=allow, extra=list(extra))
    problems = [f"{info.name}: {info.error}" for info in plugins.errors]
    if allow is not None and autoload:
        loaded = {info.name for info in plugins.report}
        problems += [
            f"{name}: no entry point named {name!r} in group 'hotremove' (is it installed?)"
            for name in allow
            if name not in loaded
        ]
    if problems:
        raise ConformanceError("plugins failed to load (strict mode):\n  " + "\n  ".join(problems))
    return plugins


# -- engine runs -------------------------------------------------------------------------------


@dataclass
class EngineRun:
    """One ``offline`` over a built machine, with everything the checks need, captured before
    verification (which syncs and so changes buffer state)."""

    built: Built
    result: OfflineResult
    shots: list[CachedPage]
    calls: list[StrategyCall]
    io: IOStats  # I/O issued during the offline (all devices, background work included)
    violations: list[LockViolation]  # lock-discipline records made during the offline
    block_map_problems: list[str]
    lockdep: bool = False  # the lock-order checker ran (it exists in this hotremove)

    @property
    def check_failures(self) -> list[CheckFailure]:
        return self.result.check_failures

    @property
    def contract_problems(self) -> list[Problem]:
        """Per-call strategy contract violations found by the probe."""
        return [p for call in self.calls for p in call.problems]


def run_offline(
    built: Built,
    plugins: PluginSet,
    *,
    blocks: Sequence[int] | None = None,
    mode: MigrateMode | str | None = None,
    policy: str | None = None,
    checks: bool = True,
    max_rounds: int | None = None,
    probe: StrategyProbe | None = None,
    lockdep: bool = True,
) -> EngineRun:
    """Offline ``blocks`` (default: the scenario's) with per-step checks on, every strategy
    call watched by a :class:`~hotremove.testing.probe.StrategyProbe`, and the lock-order
    checker on when this hotremove has one (:func:`find_lockdep`; ``EngineRun.lockdep`` says
    whether it ran)."""
    from hotremove.mm.memory_block import offline
    from hotremove.model.blockdev import IOStats
    from hotremove.testing.probe import StrategyProbe

    rm = built.scenario.remove
    machine = built.machine
    blocks = list(rm.blocks if blocks is None else blocks)
    shots = cached_pages_before(built, blocks)
    probe = probe or StrategyProbe(machine)
    before = replace(machine.io)
    seen = len(machine.task.violations)
    checking = find_lockdep() if lockdep else None
    with probe.installed(plugins.hooks), checking() if checking else contextlib.nullcontext():
        result = offline(
            machine,
            plugins.hooks,
            blocks,
            **built.scenario.offline_kwargs(
                mode=MigrateMode(mode) if mode else None,
                policy=policy,
                checks=checks,
                max_rounds=max_rounds,
            ),
        )
    io = IOStats(
        **{
            name: getattr(machine.io, name) - getattr(before, name)
            for name in IOStats.__dataclass_fields__
        }
    )
    return EngineRun(
        built,
        result,
        shots,
        list(probe.calls),
        io,
        list(machine.task.violations[seen:]),
        block_map_problems(built),
        lockdep=checking is not None,
    )


def find_lockdep() -> Callable[..., contextlib.AbstractContextManager[Any]] | None:
    """The lock-order checker's ``checking()`` context manager, when this hotremove has one
    (``hotremove.locking.lockdep``); its reports land in ``machine.task.violations``."""
    try:
        module = importlib.import_module("hotremove.locking.lockdep")
    except ModuleNotFoundError as exc:
        if exc.name not in ("hotremove.locking.lockdep", "hotremove"):
            raise
        return None
    return getattr(module, "checking", None)


# -- hook-call recording -----------------------------------------------------------------------


@dataclass
class HookCall:
    """One call the core made through the :class:`~hotremove.hooks.Hooks` facade."""

    hook: str  # the hookspec name, e.g. "hotremove_background_work"
    kwargs: dict[str, Any]
    result: Any = None


@dataclass
class HookRecorder:
    """Records every hook call the core makes through a plugin set's facade (the only way the
    core calls plugins), with its arguments and result. ``page_events=True`` makes the engine
    emit its per-page notifications (``hotremove_on_page_migrated``, ``hotremove_on_writeback``)
    even when no plugin implements them."""

    hooks: Hooks
    page_events: bool = True
    calls: list[HookCall] = field(default_factory=list)
    _saved_wants: dict[str, bool] = field(default_factory=dict)

    def install(self) -> HookRecorder:
        import inspect

        for name in _facade_methods(self.hooks):
            method = getattr(self.hooks, name)
            params = list(inspect.signature(method).parameters)
            setattr(self.hooks, name, self._wrap(f"hotremove_{name}", method, params))
        # per-event notifications are only sent when some plugin listens (wants_*_events)
        self._saved_wants = {
            name: value
            for name, value in vars(self.hooks).items()
            if name.startswith("wants_") and isinstance(value, bool)
        }
        if self.page_events:
            for name in self._saved_wants:
                setattr(self.hooks, name, True)
        return self

    def uninstall(self) -> None:
        for name in _facade_methods(self.hooks):
            self.hooks.__dict__.pop(name, None)
        for name, value in self._saved_wants.items():
            setattr(self.hooks, name, value)

    def _wrap(self, hook: str, method: Callable[..., Any], params: list[str]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            call = HookCall(hook, {**dict(zip(params, args, strict=False)), **kwargs})
            self.calls.append(call)
            call.result = method(*args, **kwargs)
            return call.result

        return recorded

    def named(self, hook: str) -> list[HookCall]:
        """Calls of one hook (``"hotremove_mount"`` or just ``"mount"``)."""
        hook = hook if hook.startswith("hotremove_") else f"hotremove_{hook}"
        return [call for call in self.calls if call.hook == hook]

    @property
    def hook_names(self) -> list[str]:
        """Hooks called, in first-call order."""
        return list(dict.fromkeys(call.hook for call in self.calls))


def _facade_methods(hooks: Hooks) -> list[str]:
    """Facade methods that stand for a hookspec (``mount`` ↔ ``hotremove_mount``)."""
    names = [n.removeprefix("hotremove_") for n in dir(hookspecs) if n.startswith("hotremove_")]
    return [name for name in names if callable(getattr(type(hooks), name, None))]


# -- log capture -------------------------------------------------------------------------------


@contextlib.contextmanager
def capture_events(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Capture structlog events (dicts with ``event``, ``log_level`` and the event's keys, plus
    context bound through contextvars) at ``level`` and above; the previous configuration is
    restored afterwards, whatever configured it."""
    old = structlog.get_config()
    capture = LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**old)


__all__ = [
    "CachedPage",
    "ConformanceError",
    "EngineRun",
    "HookCall",
    "HookRecorder",
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


#: the names of 0.1 (``snapshot`` now only means a live machine's page-flag file)
snapshot_region = cached_pages_before
PageSnapshot = CachedPage
