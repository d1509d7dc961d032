"""The conformance kit catches broken plugins: deliberately wrong variants of the ext2 plugin
run through the same ``ConformanceSuite`` checks must fail, each with a message that names
the plugin, the rule and the page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from hotremove import hookimpl
from hotremove.mm.migrate import BUFFER_MIGRATE_FOLIO, buffer_migrate_folio
from hotremove.mm.page_writeback import writeout
from hotremove.model.buffer_head import lock_buffer, page_buffers, unlock_buffer
from hotremove.model.migrate_mode import Errno
from hotremove.model.page import PG_dirty, PG_private
from hotremove.testing import ConformanceError, small_scenario
from hotremove.testing.conformance import Case, ConformanceSuite
from hotremove.workload import build

pytest_plugins = ["pytester"]

EXT2 = Case("ext2", "ext2_aops")


@dataclass(frozen=True)
class WritesThenRebinds:
    """Claims to rebind, but writes dirty pages out first (the I/O rebinding exists to avoid)."""

    name: str = "buffer_migrate_folio"
    rebinds: bool = True

    def migrate_folio(self, mc, mapping, dst, src, mode):
        if src.flags & PG_dirty:
            writeout(mc.frames, mapping, src)
        return buffer_migrate_folio(mc, mapping, dst, src, mode)


@dataclass(frozen=True)
class RebindsToTheWrongBlock:
    """Rebinds, then points the page's first buffer at the next disk block."""

    name: str = "buffer_migrate_folio"
    rebinds: bool = True

    def migrate_folio(self, mc, mapping, dst, src, mode):
        rc = buffer_migrate_folio(mc, mapping, dst, src, mode)
        if rc is Errno.OK and dst.flags & PG_private:
            page_buffers(dst)[0].b_blocknr += 1
        return rc


@dataclass(frozen=True)
class SleepsInAsync:
    """Locks buffers with the sleeping lock whatever the mode (the seed's mistake, in ASYNC)."""

    name: str = "buffer_migrate_folio"
    rebinds: bool = True

    def migrate_folio(self, mc, mapping, dst, src, mode):
        if src.flags & PG_private:
            for bh in page_buffers(src):
                lock_buffer(bh)
                unlock_buffer(bh)
        return buffer_migrate_folio(mc, mapping, dst, src, mode)


@dataclass(frozen=True)
class LeavesPrivateOnTheOldPage:
    """Rebinds, but leaves PG_private set on the old page (a hand mutation of
    ``__buffer_migrate_folio`` that forgets ``folio_detach_private``'s flag)."""

    name: str = "buffer_migrate_folio"
    rebinds: bool = True

    def migrate_folio(self, mc, mapping, dst, src, mode):
        had_buffers = src.flags & PG_private
        rc = buffer_migrate_folio(mc, mapping, dst, src, mode)
        if rc is Errno.OK and had_buffers:
            src.flags |= PG_private
        return rc


class Ext2Variant:
    """An ext2 plugin whose strategy is ``strategy`` (and that may answer too eagerly)."""

    def __init__(self, strategy: object, greedy: bool = False) -> None:
        self.strategy = strategy
        self.greedy = greedy

    @hookimpl
    def hotremove_register_filesystems(self, register):
        register("ext2", aops=["ext2_aops"])

    @hookimpl
    def hotremove_migrate_strategy(self, mapping, policy):
        if self.greedy or (policy == "auto" and mapping.a_ops.name == "ext2_aops"):
            return self.strategy
        return None


class BrokenSuite(ConformanceSuite):
    """The suite as an ext2 variant's tests would declare it (not collected: no Test prefix).
    Linux 6.1: every pass runs in the requested mode (6.12 starts a SYNC offline with ASYNC
    passes), so each verdict below belongs to one mode."""

    plugin = "broken_ext2"
    kernel = "6.1"
    filesystems: ClassVar = {"ext2": {"ext2_aops": ()}}


class LiarSuite(BrokenSuite):
    plugin_object = Ext2Variant(WritesThenRebinds())


class CorruptorSuite(BrokenSuite):
    plugin_object = Ext2Variant(RebindsToTheWrongBlock())


def test_rebinding_strategy_that_writes_back_fails(tmp_path):
    suite = LiarSuite()
    run = suite.run_case(EXT2, "sync", tmp_path)

    with pytest.raises(ConformanceError) as failure:
        suite.check_rebinding_issues_no_writeback(run)

    message = str(failure.value)
    assert message.startswith("plugin 'broken_ext2', ext2_aops in sync: a strategy claiming ")
    assert "strategy 'buffer_migrate_folio' for ext2_aops claims rebinds=True but issued " in (
        message
    )
    assert "write request(s)" in message and "page 0" not in message.split("\n")[0]
    assert run.run.io.write_requests > 0
    with pytest.raises(ConformanceError, match="pages with buffers were not rebound"):
        suite.check_rebinds(run)
    # the bytes are safe on disk (it did write them), but the engine's own per-page check
    # saw PG_dirty vanish without a page reported as written back
    assert run.verdict.ok
    with pytest.raises(ConformanceError, match=r"engine check 'flags': .*\(lost PG_dirty\)"):
        suite.check_data(run)


def test_rebinding_strategy_that_writes_back_in_async_also_sleeps(tmp_path):
    suite = LiarSuite()
    run = suite.run_case(EXT2, "async", tmp_path)
    with pytest.raises(ConformanceError, match=r"submit_bio_wait\(\) in ASYNC mode"):
        suite.check_locks(run)


def test_strategy_that_corrupts_a_block_mapping_fails(tmp_path):
    suite = CorruptorSuite()
    run = suite.run_case(EXT2, "sync", tmp_path)

    with pytest.raises(ConformanceError) as failure:
        suite.check_buffers(run)

    message = str(failure.value)
    assert "buffer_heads lost their state or block mapping" in message
    assert "corrupted the block mapping: the buffer at offset 0 maps block " in message
    assert ", the file's block map says " in message
    # the dirty buffers were then synced to the wrong blocks: the golden model sees it too
    with pytest.raises(ConformanceError, match="differs from the golden model"):
        suite.check_data(run)
    suite.check_rebinding_issues_no_writeback(run)  # no I/O: that rule holds


def test_strategy_that_leaves_pg_private_on_the_freed_page_is_a_bad_page_state(tmp_path):
    """The kernel checks every page it frees (PAGE_FLAGS_CHECK_AT_FREE): an old page freed with
    PG_private is "BUG: Bad page state", reported and never freed — so its block cannot go
    offline and the data check fails, although every byte reached its new page."""

    class Suite(BrokenSuite):
        plugin_object = Ext2Variant(LeavesPrivateOnTheOldPage())

    suite = Suite()
    run = suite.run_case(EXT2, "sync", tmp_path)
    result = run.run.result
    bad = [f for f in result.check_failures if f.check == "bad_page_state"]
    assert bad and all("PAGE_FLAGS_CHECK_AT_FREE" in f.message for f in bad)
    assert not result.offlined
    memory = run.run.built.machine.memory
    assert {b.pfn for b in memory.bad_pages} == {f.pfn for f in bad}
    assert not any(memory.is_free(b.pfn) for b in memory.bad_pages)
    with pytest.raises(ConformanceError, match="bad_page_state"):
        suite.check_data(run)


def test_strategy_that_sleeps_in_async_fails(tmp_path):
    class Suite(BrokenSuite):
        plugin_object = Ext2Variant(SleepsInAsync())

    suite = Suite()
    with pytest.raises(ConformanceError, match=r"lock_buffer\(\) in ASYNC mode"):
        suite.check_locks(suite.run_case(EXT2, "async", tmp_path))
    suite.check_locks(suite.run_case(EXT2, "sync", tmp_path / "sync"))  # SYNC may sleep


def test_plugin_answering_for_other_mappings_fails(tmp_path):
    class Suite(BrokenSuite):
        plugin_object = Ext2Variant(BUFFER_MIGRATE_FOLIO, greedy=True)

    suite = Suite()
    plugins = suite.load()
    built = build(small_scenario({"type": "ext2"}, {"type": "ext4"}), plugins.hooks, tmp_path)
    try:
        suite.check_answers_for_own(plugins, built)
        with pytest.raises(ConformanceError) as failure:
            suite.check_none_for_others(plugins, built)
    finally:
        built.machine.close()
    message = str(failure.value)
    assert "answered for mappings that are not its own" in message
    assert "ext4_da_aops under policy 'auto'" in message
    assert "ext2_aops under policy 'writeback'" in message


def test_declared_claims_must_match_registered_claims():
    class Suite(LiarSuite):
        filesystems: ClassVar = {"ext2": {"ext2_aops": (), "ext2_nobh_aops": ("nobh",)}}

    with pytest.raises(ConformanceError, match="a plugin claims exactly what it says"):
        Suite().check_claims(Suite().load())


def test_unmarked_or_unknown_hooks_fail():
    class Typo:
        @hookimpl
        def hotremove_migrate_stratgy(self, mapping, policy):
            return None

    class Unmarked:
        def hotremove_migrate_strategy(self, mapping, policy):
            return None

    class TypoSuite(BrokenSuite):
        plugin_object = Typo()

    class UnmarkedSuite(BrokenSuite):
        plugin_object = Unmarked()

    with pytest.raises(ConformanceError, match="unknown hook 'hotremove_migrate_stratgy'"):
        TypoSuite().check_hooks_known()
    with pytest.raises(ConformanceError, match="hotremove_migrate_strategy not marked"):
        UnmarkedSuite().check_hooks_known()


def test_unknown_capability_in_a_declaration_is_an_error():
    class Suite(LiarSuite):
        unsupported: ClassVar = {"rebind": "typo"}

    with pytest.raises(ConformanceError, match="unknown capability 'rebind'"):
        Suite().check_declaration()


def test_full_suite_reports_the_liar_through_pytest(pytester):
    """What a plugin author sees: the suite's tests fail by name, with the rule in the report."""
    pytester.makepyfile(
        test_liar=f"""
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location("hr_broken_plugins", {str(Path(__file__))!r})
        broken = sys.modules["hr_broken_plugins"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(broken)


        class TestLiar(broken.LiarSuite):
            modes = ("sync",)
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-rfs")

    failed = sorted(
        line.split("::")[-1].split(" ")[0]
        for line in result.stdout.lines
        if line.startswith("FAILED ")
    )
    assert failed == [
        "test_bounded_exploration",
        "test_buffers_keep_state_and_block_mapping[ext2_aops-sync]",
        "test_buffers_locked_by_io[ext2_aops-sync]",
        "test_migration_keeps_data[ext2_aops-sync]",
        "test_pages_with_buffers_are_rebound[ext2_aops-sync]",
        "test_rebinding_strategy_issues_no_writeback[ext2_aops-sync]",
    ], result.stdout.str()
    assert "claims rebinds=True but issued writeback" in result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 5  # the rules it keeps pass: locks, answers, claims ...


def test_the_2004_seed_fails_the_suite_on_each_of_its_bugs(tmp_path):
    """The ext2 plugin keeps the 2004 patch's own strategy as policy "ext2-seed2004", bugs and
    all: the kit names each one."""
    from hotremove_ext2.plugin import SEED2004_POLICY

    class SeedSuite(ConformanceSuite):
        plugin = "ext2"
        kernel = "2004"
        filesystems: ClassVar = {"ext2": {"ext2_aops": ()}}

    suite = SeedSuite()
    run = suite.run_case(Case("ext2", "ext2_aops", policy=SEED2004_POLICY), "sync", tmp_path)

    with pytest.raises(ConformanceError) as locks:
        suite.check_locks(run)
    assert "BUG: sleeping function called from invalid context: lock_buffer(" in str(locks.value)
    if run.run.lockdep:
        assert "possible circular locking dependency detected" in str(locks.value)
    with pytest.raises(ConformanceError, match=r"\(Uptodate\|Mapped -> Uptodate\|Dirty\|Mapped\)"):
        suite.check_buffers(run)  # "XXX this will make a whole page dirty"
    with pytest.raises(ConformanceError, match="does not carry the old page's buffer_heads"):
        suite.check_rebinds(run)  # clean pages drop their buffers instead
    suite.check_data(run)  # but no byte is lost


def test_every_probe_rule_is_checked_by_some_suite_test():
    from hotremove.testing import conformance
    from hotremove.testing.probe import RULES

    covered = (
        conformance.DATA_RULES
        | conformance.BUFFER_RULES
        | conformance.LOCK_RULES
        | {"no_writeback", "rebinding"}
    )
    assert covered == set(RULES)


class GoodWithABrokenVariant(Ext2Variant):
    """Rebinds correctly under "auto"; its registered variant "liar" writes back."""

    @hookimpl
    def hotremove_register_filesystems(self, register):
        register("ext2", aops=["ext2_aops"], policies=["liar"])

    @hookimpl
    def hotremove_migrate_strategy(self, mapping, policy):
        if mapping.a_ops.name != "ext2_aops":
            return None
        return {"auto": BUFFER_MIGRATE_FOLIO, "liar": self.strategy}.get(policy)


def test_a_variant_declared_non_conforming_is_left_out_by_name():
    class Suite(BrokenSuite):
        plugin_object = GoodWithABrokenVariant(WritesThenRebinds())
        policies = ("liar",)
        unsupported: ClassVar = {"conformance[ext2_aops@liar]": "reproduces a bug on purpose"}

    suite = Suite()
    suite.check_claims(suite.load())
    assert [c.id for c in suite.all_cases()] == ["ext2_aops", "ext2_aops@liar"]
    assert suite.unavailable(Case("ext2", "ext2_aops")) is None
    assert suite.unavailable(Case("ext2", "ext2_aops", policy="liar")) == (
        "ext2_aops@liar: broken_ext2 declares it does not conform: reproduces a bug on purpose"
    )
    undeclared = type("Undeclared", (Suite,), {"unsupported": {}})()
    assert undeclared.unavailable(Case("ext2", "ext2_aops", policy="liar")) is None


# -- the kit's own plumbing -------------------------------------------------------------------


def test_the_pytest_plugin_is_lazy_and_rewrites_the_kits_asserts():
    import subprocess
    import sys

    probe = (
        "import sys, hotremove.testing.fixtures\n"
        "heavy = ('numpy', 'pydantic', 'hotremove.mm', 'hotremove.testing.helpers')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]", "importing the pytest plugin must not import the engine"
    for name in ("hotremove.testing.helpers", "hotremove.testing.contract"):
        loader = sys.modules[name].__loader__
        assert type(loader).__name__ == "AssertionRewritingHook", name
