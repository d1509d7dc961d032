"""Explore a scenario end to end: build its machine once over real images, explore, report.

Built-in tiny scenarios (a handful of pages, so thousands of schedules run in seconds) are
the TOML files in ``hotremove/explore/scenarios``, named without ``.toml`` (:data:`BUILTIN`);
any scenario file works, but keep the region small: every schedule migrates all of it.
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


#: the most pages the offlined blocks may hold: the explorer preempts at every lock of every
#: page, so a schedule's length grows with the region (16 MiB: seconds a schedule)
MAX_REGION_PAGES = 4096


def check_explorable(scenario: Scenario) -> None:
    """Refuse, up front and in one line, a region too large to explore schedule by schedule."""
    pages = len(set(scenario.remove.blocks)) * scenario.memory.block_size // PAGE_SIZE
    if pages > MAX_REGION_PAGES:
        raise ScenarioError(
            f"remove.blocks: the blocks to offline hold {pages:,} pages; the explorer preempts "
            f"at every lock of every page and takes at most {MAX_REGION_PAGES:,} "
            f"({MAX_REGION_PAGES * PAGE_SIZE >> 20} MiB) — use smaller memory blocks or a "
            "smaller machine (see the scenarios in hotremove/explore/scenarios)"
        )


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
) -> ExploreResult:
    """Build ``scenario`` once and explore schedules ``first`` … ``first + schedules - 1`` of
    ``seed``; the full verification (sync, the images' checkers, the read-back) runs on the
    first schedule and every ``full_every``-th."""
    check_explorable(scenario)
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
