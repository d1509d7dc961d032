"""Explore a scenario end to end: build its machine once over real images, explore, report.

Built-in tiny scenarios (a handful of pages, so thousands of schedules run in seconds) are
the TOML files in ``hotremove/explore/scenarios``, named without ``.toml`` (:data:`BUILTIN`);
any scenario file works: a region of more than :data:`MAX_REGION_PAGES` pages is explored
*focused* on a window of its pages (:mod:`hotremove.explore.focus`).
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from hotremove import scenario as scenario_mod
from hotremove.errors import ScenarioError
from hotremove.explore.actors import ACTORS
from hotremove.explore.focus import FOCUS_PAGES, choose_focus
from hotremove.explore.runner import Explorer, ExploreResult, ScheduleResult
from hotremove.explore.scheduler import Finding
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import PAGE_SIZE
from hotremove.plugins import PluginSet, load_plugins
from hotremove.scenario import Scenario
from hotremove.sim.report import not_clean
from hotremove.sim.verify import verify
from hotremove.workload import build

#: the built-in scenarios' names (``hotremove explore NAME``)
BUILTIN = tuple(
    sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files("hotremove.explore").joinpath("scenarios").iterdir()
        if entry.name.endswith(".toml")
    )
)


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario file, or the name of a built-in explorer scenario."""
    path = Path(name_or_path)
    if not path.exists() and name_or_path in BUILTIN:
        text = resources.files("hotremove.explore").joinpath(f"scenarios/{name_or_path}.toml")
        return scenario_mod.loads(text.read_text(encoding="utf-8"), source=f"{name_or_path}.toml")
    return scenario_mod.load(path)


#: the most pages the offlined blocks may hold for an unfocused schedule: it preempts at every
#: lock of every page, so its length grows with the region (16 MiB: seconds a schedule);
#: past it the explorer focuses on a window of FOCUS_PAGES pages (hotremove.explore.focus)
MAX_REGION_PAGES = 4096


def region_pages(scenario: Scenario) -> int:
    """The pages in the blocks ``scenario`` offlines."""
    return len(set(scenario.remove.blocks)) * scenario.memory.block_size // PAGE_SIZE


def focus_size(scenario: Scenario, focus: int | None = None) -> int:
    """The window's size in pages (0: unfocused). ``focus`` None: focused past
    :data:`MAX_REGION_PAGES`; an unfocused schedule of a larger region is refused in one line."""
    pages = region_pages(scenario)
    if focus is None:
        return FOCUS_PAGES if pages > MAX_REGION_PAGES else 0
    if focus == 0 and pages > MAX_REGION_PAGES:
        raise ScenarioError(
            f"--focus 0: the blocks to offline hold {pages:,} pages; an unfocused schedule "
            f"preempts at every lock of every page and takes at most {MAX_REGION_PAGES:,} "
            f"({MAX_REGION_PAGES * PAGE_SIZE >> 20} MiB) — leave the focus on"
        )
    return focus


def check_explorable(scenario: Scenario, focus: int | None = None) -> None:
    """Refuse, up front and in one line, what cannot be explored (see :func:`focus_size`)."""
    focus_size(scenario, focus)


def explore_scenario(
    scenario: Scenario,
    *,
    schedules: int,
    seed: int,
    actors: Sequence[str] = ACTORS,
    first: int = 0,
    plugins: PluginSet | None = None,
    workdir: Path | None = None,
    full_every: int = 0,
    progress: Callable[[ScheduleResult], None] | None = None,
    focus: int | None = None,
) -> ExploreResult:
    """Build ``scenario`` once and explore schedules ``first`` … ``first + schedules - 1`` of
    ``seed``; the full verification (sync, the images' checkers, the read-back) runs on the
    first schedule and every ``full_every``-th. ``focus``: the window's size in pages (see
    :func:`focus_size`); the window is chosen from ``seed``."""
    window = focus_size(scenario, focus)
    plugins = plugins or load_plugins()
    rm = scenario.remove
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="explore-")))
        built = build(scenario, plugins.hooks, workdir)
        stack.callback(built.machine.close)

        def full_check() -> list[Finding]:
            verdict = verify(built, plugins.hooks)
            if verdict.ok:
                return []
            bad = {n: f for n, f in verdict.fsck.items() if not f["ok"]}
            return [Finding("verify", not_clean({n: f})) for n, f in bad.items()] + [
                Finding("verify", f"read back: {m}") for m in verdict.mismatches[:5]
            ]

        explorer = Explorer(
            built.machine,
            plugins.hooks,
            rm.blocks,
            mode=MigrateMode(rm.mode),
            policy=rm.strategy,
            max_rounds=rm.max_rounds,
            actors=actors,
            golden=built.golden.files.hold(),
            full_check=full_check,
            focus=choose_focus(built.machine, rm.blocks, seed, window) if window else None,
        )
        result = explorer.explore(
            seed, schedules, first=first, full_every=full_every, progress=progress
        )
        explorer.close()
        return result


def replay_command(
    scenario: str,
    seed: int,
    schedule: int,
    *,
    actors: Sequence[str],
    extra: Sequence[str] = (),
) -> str:
    """The command line that replays one schedule."""
    args = ["hotremove", "explore", scenario, "--seed", str(seed), "--schedule", str(schedule)]
    args += ["--actors", ",".join(actors), *extra]
    return shlex.join(args)


def format_failure(result: ScheduleResult, *, trace_lines: int = 24) -> list[str]:
    """The failing schedule: its findings (with the kernel-style details) and the end of
    the interleaving that broke it."""
    lines = [
        f"schedule {result.schedule} of seed {result.seed} FAILED after {result.steps} steps "
        f"({result.switches} context switches; actors: offline, {', '.join(result.actors)})"
    ]
    for finding in result.findings:
        lines.append(f"  {finding}")
        lines.extend(f"    {line}" for line in finding.details.splitlines())
    tail = result.trace[-trace_lines:]
    if tail:
        lines.append(f"last {len(tail)} of {len(result.trace)} steps (step, task, operation, on):")
        lines.extend(f"  {event}" for event in tail)
    lines.append(f"trace digest {result.digest}")
    return lines
