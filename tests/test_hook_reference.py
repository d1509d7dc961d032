"""The hook reference in docs/plugins.md is complete and true.

Meta-tests: every hookspec has a documented section whose signature matches the spec, which
says what kind of hook it is, when it is called, what ``None`` means and since which version —
and every hook is exercised by at least one test. Behaviour tests (through the kit's own
fixtures): each hook is called when and how its section says.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from hotremove import hookimpl, hookspecs
from hotremove.model.migrate_mode import MigrateMode
from hotremove.model.page import PG_dirty

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
SPECS = {
    name: func
    for name, func in vars(hookspecs).items()
    if name.startswith("hotremove_") and hasattr(func, "hotremove_spec")
}
TEST_DIRS = [ROOT / "tests", ROOT / "core" / "tests", *sorted((ROOT / "plugins").glob("*/tests"))]


def documented() -> dict[str, str]:
    """Hook name → the text of its ``### `hotremove_...` `` section in the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    parts = re.split(r"^### `(hotremove_\w+)`\s*$", text, flags=re.M)
    sections = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = re.split(r"^##? ", body, maxsplit=1, flags=re.M)[0]
    return sections


def spec_signature(func) -> str:
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {func.__name__}({params}) -> {sig.return_annotation}"


def normalized(code: str) -> str:
    code = " ".join(code.split())
    return re.sub(r",?\s*\)", ")", code.replace("( ", "("))


def field(section: str, name: str) -> str:
    match = re.search(rf"^- \*\*{name}:\*\* (.+?)(?=^- \*\*|\Z)", section, flags=re.M | re.S)
    assert match, f"no **{name}:** line"
    return " ".join(match.group(1).split())


def naming_tests(hook: str) -> list[str]:
    """Test functions (anywhere in the test suites) whose source names ``hook``."""
    found = []
    for directory in TEST_DIRS:
        for path in directory.glob("test_*.py"):
            source = path.read_text(encoding="utf-8")
            if hook not in source:
                continue
            for node in ast.walk(ast.parse(source)):
                if (
                    isinstance(node, ast.FunctionDef)
                    and node.name.startswith("test_")
                    and hook in (ast.get_source_segment(source, node) or "")
                ):
                    found.append(f"{path.relative_to(ROOT)}::{node.name}")
    return found


# -- the reference is complete ---------------------------------------------------------------


def test_every_hookspec_has_a_section_and_no_section_is_stale():
    assert set(documented()) == set(SPECS)


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_documented_signature_matches_the_spec(hook):
    section = documented()[hook]
    block = re.search(r"```python\n(.+?)```", section, flags=re.S)
    assert block, f"{hook}: no signature block"
    assert normalized(block.group(1)) == normalized(spec_signature(SPECS[hook]))


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_documented_kind_call_time_none_and_version(hook):
    section, spec = documented()[hook], SPECS[hook]
    opts = spec.hotremove_spec
    kind = field(section, "Kind")
    assert ("firstresult" in kind) == bool(opts.get("firstresult"))
    assert ("historic" in kind) == bool(opts.get("historic"))
    assert len(field(section, "Called")) > 20
    assert "None" in field(section, "Returns")
    since = re.search(r"\(since (\d+\.\d+)\)", " ".join(spec.__doc__.split()))
    assert since, f"{hook}: the spec's docstring says since which version"
    assert field(section, "Since") == since.group(1)


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_every_hook_has_at_least_one_test(hook):
    assert naming_tests(hook), f"no test function mentions {hook}"


# -- each hook is called as documented ---------------------------------------------------------


class Listener:
    """Implements every notification hook and records the calls."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple]] = []

    def named(self, hook: str) -> list[tuple]:
        return [args for name, args in self.events if name == hook]

    @hookimpl
    def hotremove_on_page_migrated(self, mapping, old_pfn, new_pfn, strategy):
        self.events.append(("hotremove_on_page_migrated", (mapping, old_pfn, new_pfn, strategy)))

    @hookimpl
    def hotremove_on_writeback(self, mapping, pfn, requests):
        self.events.append(("hotremove_on_writeback", (mapping, pfn, requests)))

    @hookimpl
    def hotremove_on_pass_finished(self, pass_no, mode, migrated, remaining):
        self.events.append(("hotremove_on_pass_finished", (pass_no, mode, migrated, remaining)))

    @hookimpl
    def hotremove_mount(self, machine, sb):
        cached = [m for m in machine.mappings if m.host.i_sb is sb]
        self.events.append(("hotremove_mount", (sb.s_id, len(cached))))


def test_register_filesystems_is_called_once_per_plugin_manager(hotremove_make_plugins):
    calls = []

    class Registrar:
        @hookimpl
        def hotremove_register_filesystems(self, register):
            calls.append(register)
            register("ext4", aops=["ext4_aops"], description="test", policies=["ext4-test"])

    plugins = hotremove_make_plugins(("registrar", Registrar()), autoload=False)

    assert len(calls) == 1
    info = {p.name: p for p in plugins.report}["registrar"]
    assert (info.fs_types, info.aops, info.policies) == (["ext4"], ["ext4_aops"], ["ext4-test"])
    assert plugins.aops_owner == {"ext4_aops": "registrar"}
    assert plugins.policies == {"ext4-test": "registrar"}


def test_migrate_strategy_is_asked_once_per_address_space_first_answer_wins(
    hotremove_make_plugins, hotremove_machine, hotremove_run, hotremove_hook_recorder
):
    asked = []

    class Declines:
        @hookimpl(tryfirst=True)
        def hotremove_migrate_strategy(self, mapping, policy):
            asked.append(mapping)  # None: "not mine", the next plugin is asked

    plugins = hotremove_make_plugins(("declines", Declines()), allow=["ext2"])
    built = hotremove_machine({"type": "ext2"}, plugins=plugins)
    del asked[:]  # the load-time probe asked too
    recorder = hotremove_hook_recorder(plugins)

    run = hotremove_run(built, plugins)

    answers = recorder.named("hotremove_migrate_strategy")
    assert len(answers) == len(asked) == len({id(s.mapping) for s in run.shots})
    assert len(answers) < len(run.shots), "asked per address_space, not per page"
    assert {(call.result[0].name, call.result[1]) for call in answers} == {
        ("buffer_migrate_folio", "ext2")
    }
    assert run.result.per_aops["ext2_aops"].plugin == "ext2"


def test_mount_is_called_per_filesystem_before_its_pages_are_cached(
    hotremove_make_plugins, hotremove_machine
):
    listener = Listener()
    plugins = hotremove_make_plugins(("listener", listener), autoload=False)

    hotremove_machine({"type": "ext2"}, {"type": "ext4"}, plugins=plugins)

    assert listener.named("hotremove_mount") == [("fs0", 0), ("fs1", 0)]


def test_background_work_runs_between_passes_and_before_sync(
    hotremove_machine, hotremove_run, hotremove_verify, hotremove_hook_recorder
):
    built = hotremove_machine({"type": "ext3", "block_size": 2048, "options": ["data=journal"]})
    recorder = hotremove_hook_recorder()

    run = hotremove_run(built)

    names = [call.hook for call in recorder.calls]
    first_work = names.index("hotremove_background_work")
    assert recorder.calls[first_work].kwargs["reason"] == "pass"
    retried = [
        i
        for i, call in enumerate(recorder.calls)
        if call.hook == "hotremove_on_pass_finished" and call.kwargs["remaining"]
    ]
    assert retried and retried[0] < first_work, "background work follows a pass with retries"
    assert run.result.passes >= 2 and built.machine.superblocks[0].s_journal.commits >= 1
    assert hotremove_verify(built).ok
    assert recorder.named("hotremove_background_work")[-1].kwargs["reason"] == "sync"


def test_on_page_migrated_reports_every_moved_page_when_implemented(
    hotremove_make_plugins, hotremove_machine, hotremove_run
):
    listener = Listener()
    plugins = hotremove_make_plugins(("listener", listener), allow=["ext2"])
    built = hotremove_machine({"type": "ext2"}, plugins=plugins)
    assert plugins.hooks.wants_page_events

    run = hotremove_run(built, plugins)

    moved = listener.named("hotremove_on_page_migrated")
    assert len(moved) == run.result.migrated == len(run.shots)
    memory = built.machine.memory
    for mapping, old_pfn, new_pfn, strategy in moved:
        assert mapping is not None and strategy == "buffer_migrate_folio"
        assert memory.block_of(old_pfn) == 1 and memory.block_of(new_pfn) != 1
    assert {old for _, old, _, _ in moved} == {s.pfn for s in run.shots}


def test_on_page_migrated_costs_nothing_when_nobody_listens(hotremove_make_plugins):
    assert not hotremove_make_plugins(allow=["ext2"]).hooks.wants_page_events


def test_on_writeback_reports_every_page_written_to_move(
    hotremove_make_plugins, hotremove_machine, hotremove_run
):
    listener = Listener()
    plugins = hotremove_make_plugins(("listener", listener), allow=["generic_writeback"])
    built = hotremove_machine(  # 6.12: the fallback writes (7.2's refuses dirty pages)
        {"type": "ext4", "block_size": 1024}, dirty=0.6, plugins=plugins, kernel="6.12"
    )

    run = hotremove_run(built, plugins)

    stats = run.result.per_aops["ext4_da_aops"]
    written = listener.named("hotremove_on_writeback")
    assert len(written) == stats.written_back > 0
    assert sum(requests for _, _, requests in written) == stats.write_requests
    assert {pfn for _, pfn, _ in written} == {s.pfn for s in run.shots if s.flags & PG_dirty}


@pytest.mark.parametrize("kernel", ["2004", "6.12"])
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_on_pass_finished_reports_each_pass(
    mode, kernel, hotremove_make_plugins, hotremove_machine, hotremove_run
):
    listener = Listener()
    plugins = hotremove_make_plugins(("listener", listener), allow=["generic_writeback"])
    built = hotremove_machine({"type": "ext4"}, plugins=plugins, mode=mode, kernel=kernel)

    run = hotremove_run(built, plugins)

    passes = listener.named("hotremove_on_pass_finished")
    modes = [p[1] for p in passes]
    assert [p[0] for p in passes] == list(range(1, run.result.passes + 1))
    if kernel == "2004":  # the seed: the requested mode first, then SYNC
        assert modes[0] is MigrateMode(mode)
        assert all(m is MigrateMode.SYNC for m in modes[1:])
    elif mode == "async":  # 6.12: an ASYNC migrate_pages is ASYNC throughout
        assert set(modes) == {MigrateMode.ASYNC}
    else:  # 6.12 migrate_pages_sync: ASYNC passes first, then the failed folios in SYNC
        assert modes[0] is MigrateMode.ASYNC and MigrateMode.SYNC in modes
    assert sum(p[2] for p in passes) == run.result.migrated


def test_log_events_fixture_sees_the_engines_events(
    hotremove_log_events, hotremove_machine, hotremove_run
):
    run = hotremove_run(hotremove_machine({"type": "ext2"}))

    events = [e for e in hotremove_log_events if e["event"] == "pass_finished"]
    assert [e["pass_no"] for e in events] == list(range(1, run.result.passes + 1))
    assert any(e["event"] == "offline_finished" for e in hotremove_log_events)
