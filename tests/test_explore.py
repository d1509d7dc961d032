"""The interleaving explorer: built-in strategies survive it, every known-bad strategy is
caught within a stated number of schedules, schedules replay bit for bit, and hypothesis
drives the same explorer (scenario, actors and schedule as strategies) and shrinks failures.

CI runs a few hundred schedules; ``HOTREMOVE_EXPLORE_SCHEDULES=2000`` runs more per case.
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from hotremove.cli.explore import explore as explore_command
from hotremove.explore import ACTORS, Explorer, ListChooser
from hotremove.explore.focus import choose_focus
from hotremove.explore.scheduler import Scheduler
from hotremove.explore.session import explore_scenario, load_scenario
from hotremove.locking.lockdep import InstrumentedLocks, Lockdep
from hotremove.model.locks import Mutex, Task, set_tracker
from hotremove.model.migrate_mode import MigrateMode
from hotremove.plugins import load_plugins
from hotremove.scenario import validate
from hotremove.workload import build

from .conftest import invoke
from .known_bad import strategies as known_bad

SCHEDULES = int(os.environ.get("HOTREMOVE_EXPLORE_SCHEDULES", "80"))
KNOWN_BAD = Path(__file__).parent / "known_bad" / "strategies.py"


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(extra=[("known_bad", known_bad)])


def scenario(name: str, strategy: str = "auto", kernel: str | None = None, **fs: object):
    data = load_scenario(name).model_dump()
    data["filesystem"][0].update(fs)
    data["remove"]["strategy"] = strategy
    if kernel is not None:
        data["kernel"]["version"] = kernel
    return validate(data)


# -- the built-in strategies survive ---------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "strategy", "fs", "all_offline"),
    [
        ("ext2", "auto", {}, True),  # buffer_migrate_folio
        ("ext2", "auto", {"options": ["nobh"]}, True),  # migrate_folio
        ("ext3-ordered", "auto", {"kernel": "6.12"}, True),  # ext4's buffer_migrate_folio
        # 6.12's buffer_migrate_folio_norefs: a schedule in which jbd2 still holds a buffer
        # when the signal comes ends -EINTR, rolled back — the kernel's behaviour, not a bug
        ("ext3-journal", "auto", {}, False),
        # 6.12's fallback_migrate_folio: written back, but jbd2 keeps the heads of buffers
        # that the explored second did not let it commit and clean (7.2's writes nothing)
        ("ext3-journal", "writeback", {"kernel": "6.12"}, False),
    ],
)
def test_built_in_strategies_survive_exploration(plugins, name, strategy, fs, all_offline):
    result = explore_scenario(
        scenario(name, strategy, **fs), schedules=SCHEDULES, seed=7, plugins=plugins
    )
    assert result.ok, "\n".join(result.problems)
    assert result.schedules_run == SCHEDULES
    if all_offline:
        assert result.offlined == SCHEDULES
    else:
        assert 0 < result.offlined < SCHEDULES, "some schedules let jbd2 finish first"
    assert result.switches > SCHEDULES * 10, "the actors really interleaved"


# -- every known-bad strategy is caught, within a stated bound -------------------------------
#: policy, scenario, what catches it, the schedule that caught it with seed 1 (measured) and
#: the bound the test allows.
CAUGHT = [
    ("ext2-seed2004", "ext2", "sleep_in_atomic", 0, 1),
    # 2004's ext3 ran the seed's code "with trivial changes", bugs included
    ("auto", "ext3-ordered", "sleep_in_atomic", 0, 1),
    ("bad-unlocked-rebind", "ext3-ordered", "io_from_foreign_frame", 1, 10),
    ("bad-journal-rebind", "ext3-journal", "io_from_foreign_frame", 4, 20),
    ("bad-no-page-ref", "ext2", "check:refcount", 0, 1),
    ("bad-clears-buffer-dirty", "ext2", "lost_write", 0, 1),
]


@pytest.mark.parametrize(("policy", "name", "kind", "measured", "bound"), CAUGHT)
def test_known_bad_strategies_are_caught(plugins, policy, name, kind, measured, bound):
    result = explore_scenario(scenario(name, policy), schedules=bound, seed=1, plugins=plugins)
    assert result.failure is not None, f"{policy} survived {bound} schedules"
    assert result.failure.schedule == measured
    assert result.failure.findings[0].kind == kind, result.problems


def test_the_seed_is_flagged_with_the_kernel_message(plugins):
    result = explore_scenario(
        scenario("ext2", "ext2-seed2004"), schedules=1, seed=1, plugins=plugins
    )
    finding = result.failure.findings[0]
    assert finding.message.startswith("BUG: sleeping function called from invalid context")
    assert "private_lock held" in finding.message
    assert "Call Trace:\n  lock_buffer\n  remap_move_buffer_ext2" in finding.details


# -- reproducible bit for bit ----------------------------------------------------------------
def test_a_schedule_replays_bit_for_bit(plugins):
    scn = scenario("ext3-ordered", "bad-unlocked-rebind")
    first = explore_scenario(scn, schedules=10, seed=1, plugins=plugins).failure
    again = explore_scenario(scn, schedules=1, seed=1, first=first.schedule, plugins=plugins)
    assert again.failure is not None
    assert again.failure.digest == first.digest and again.failure.trace == first.trace
    assert [str(f) for f in again.failure.findings] == [str(f) for f in first.findings]
    other = explore_scenario(scn, schedules=1, seed=2, plugins=plugins)
    assert other.digests[0] != first.digest


def test_a_deadlock_is_detected_and_named():
    a, b = Mutex("A", "lock_a"), Mutex("B", "lock_b")

    def take(first: Mutex, second: Mutex) -> None:
        with first, second:
            pass

    # run t1 until it holds A, then t2 until it holds B: each then sleeps on the other's lock
    scheduler = Scheduler(ListChooser([0, 1, 0, 0, 0]), max_steps=100)
    scheduler.add("t1", lambda: take(a, b), Task("t1"))
    scheduler.add("t2", lambda: take(b, a), Task("t2"))
    old = set_tracker(InstrumentedLocks(Lockdep(), scheduler=scheduler))
    try:
        scheduler.run()
    finally:
        set_tracker(old)
    kinds = [f.kind for f in scheduler.findings]
    assert kinds[0] in ("lock_order", "deadlock")
    assert threading.active_count() < 10, "actor threads end with the schedule"


# -- hypothesis drives the explorer ----------------------------------------------------------
@pytest.fixture(scope="module")
def explorers(tmp_path_factory, plugins):
    """One built machine per (scenario, policy), explored many times."""
    made: dict[tuple[str, str], Explorer] = {}
    builds = []

    def get(name: str, policy: str, kernel: str | None = None) -> Explorer:
        if (name, policy, kernel) not in made:
            scn = scenario(name, policy, kernel)
            built = build(scn, plugins.hooks, tmp_path_factory.mktemp(f"{name}-{policy}"))
            builds.append(built)
            made[(name, policy, kernel)] = Explorer(
                built.machine,
                plugins.hooks,
                scn.remove.blocks,
                mode=MigrateMode(scn.remove.mode),
                policy=policy,
                golden=built.golden.files.hold(),
                actors=ACTORS,
            )
        return made[(name, policy, kernel)]

    yield get
    for explorer in made.values():
        explorer.close()
    for built in builds:
        built.machine.close()


def _explorer_with(get, name, policy, actors, kernel=None):
    explorer = get(name, policy, kernel)
    explorer.actors = tuple(a for a in actors if a != "journal" or name != "ext2")
    return explorer


@settings(
    max_examples=25, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    name=st.sampled_from(["ext2", "ext3-ordered", "ext3-journal"]),
    actors=st.lists(st.sampled_from(ACTORS), unique=True),
    seed=st.integers(0, 2**32),
    choices=st.lists(st.integers(0, 7), max_size=200),
)
def test_property_built_ins_never_break(explorers, name, actors, seed, choices):
    # the built-ins of the newest kernel (2004's ext3 is the seed's code, bugs included)
    explorer = _explorer_with(explorers, name, "auto", actors, kernel="6.12")
    result = explorer.run_schedule(seed, 0, ListChooser(choices))
    assert not result.failed, [str(f) for f in result.findings]


def test_hypothesis_shrinks_a_failure_to_a_small_case(explorers):
    def fails(case: tuple[list[str], int, list[int]]) -> bool:
        actors, seed, choices = case
        explorer = _explorer_with(explorers, "ext3-ordered", "bad-unlocked-rebind", actors)
        return explorer.run_schedule(seed, 0, ListChooser(choices)).failed

    actors, seed, choices = find(
        st.tuples(
            st.lists(st.sampled_from(ACTORS), unique=True),
            st.integers(0, 2**16),
            st.lists(st.integers(0, 7), max_size=120),
        ),
        fails,
        settings=settings(max_examples=300, database=None, deadline=None, derandomize=True),
    )
    assert "journal" in actors, "the race needs kjournald's ordered-data write"
    assert len(choices) <= 3, (actors, seed, choices)  # found: 3 actors, seed 3, choices [3]


# -- the command -----------------------------------------------------------------------------
def test_explore_command_prints_the_failure_and_its_replay():
    runner = CliRunner()
    args = ["ext3-ordered", "--plugin", str(KNOWN_BAD), "--strategy", "bad-unlocked-rebind"]
    result = runner.invoke(
        explore_command, [*args, "--schedules", "20", "--seed", "1"], standalone_mode=False
    )
    assert result.return_value == 1, result.output
    assert "io_from_foreign_frame [kjournald]" in result.output
    replay = result.output.split("replay: ", 1)[1].strip().split()
    assert replay[:6] == ["hotremove", "explore", "ext3-ordered", "--seed", "1", "--schedule"]
    digest = result.output.split("trace digest ", 1)[1].split()[0]
    again = runner.invoke(explore_command, replay[2:], standalone_mode=False)
    assert again.return_value == 1 and f"trace digest {digest}" in again.output


def test_explore_command_passes_the_merged_strategy():
    result = CliRunner().invoke(
        explore_command, ["ext2", "--schedules", "5", "--json"], standalone_mode=False
    )
    assert result.return_value == 0, result.output
    assert '"ok": true' in result.output and '"schedules_run": 5' in result.output


#: a machine whose offlined block holds 32,768 pages (8× what an unfocused schedule takes),
#: 16,384 of them ext2 page cache (1 KiB blocks: four buffer_heads a page)
BIG = (
    '[memory]\nsize = "384MiB"\nblock_size = "128MiB"\n'
    '[[filesystem]]\nname = "data"\ntype = "ext2"\nblock_size = 1024\nsize = "80MiB"\n'
    'files = 256\nfile_size = "256KiB"\n'
    '[workload]\nseed = 1\ndirty = 0.3\nplacement = "fill"\n[remove]\nblocks = [0]\n'
)


def test_an_unfocused_large_region_is_refused_in_one_line(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text(BIG)
    proc = invoke("explore", big, "--focus", "0")
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "hold 32,768 pages" in proc.stderr and "at most 4,096" in proc.stderr


def test_a_large_region_is_explored_focused_and_offlined_whole(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text(BIG)
    proc = invoke("explore", big, "--schedules", "3", "--seed", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["schedules_run"] == 3 and out["offlined"] == 3
    assert out["focus"].startswith("focus: 16 of the region's 32,768 pages (pfn ")
    assert "chosen from the seed" in out["focus"]
    assert out["context_switches"] > 3 * 10, "the actors interleaved in the window"


def test_the_focused_explorer_finds_the_seeds_bug_on_a_large_scenario(plugins, tmp_path):
    small = explore_scenario(
        scenario("ext2", "ext2-seed2004"), schedules=1, seed=1, plugins=plugins
    )
    big = validate({**tomllib.loads(BIG), "remove": {"blocks": [0], "strategy": "ext2-seed2004"}})
    large = explore_scenario(big, schedules=1, seed=1, plugins=plugins)
    assert large.focus is not None and len(large.focus.pfns) == 16
    assert small.failure is not None and large.failure is not None
    assert large.failure.schedule == small.failure.schedule == 0
    found, want = large.failure.findings[0], small.failure.findings[0]
    assert found.kind == want.kind == "sleep_in_atomic"
    assert found.message.startswith("BUG: sleeping function called from invalid context")
    assert "private_lock held" in found.message
    assert "Call Trace:\n  lock_buffer\n  remap_move_buffer_ext2" in found.details


def test_the_focus_window_is_the_seeds(plugins, tmp_path):
    scn = validate(tomllib.loads(BIG))
    built = build(scn, plugins.hooks, tmp_path)
    try:
        one, again = (choose_focus(built.machine, [0], 1) for _ in range(2))
        other = choose_focus(built.machine, [0], 2)
        assert one.keys == again.keys and one.pfns.tolist() == again.pfns.tolist()
        assert set(one.pfns.tolist()) != set(other.pfns.tolist())
        region = built.machine.memory.blocks[0]
        assert all(region.start_pfn <= p < region.end_pfn for p in one.pfns.tolist())
        assert one.covers(built.machine.memory.pages[int(one.pfns[0])])
        outside = next(
            page
            for mapping in built.machine.mappings
            for _, page in mapping.i_pages.items()
            if page.pfn not in set(one.pfns.tolist())
        )
        assert not one.covers(outside)
    finally:
        built.machine.close()
