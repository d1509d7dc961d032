"""``ConformanceSuite``: the checks every hotremove plugin must pass, as a base class.

A plugin's test module subclasses it with a few lines::

    from hotremove.testing.conformance import ConformanceSuite

    class TestMyfsConformance(ConformanceSuite):
        plugin = "myfs"                        # the entry-point name
        dist = "hotremove-myfs"                # optional: the distribution that ships it
        filesystems = {                        # fs type -> {a_ops it claims: mount options
            "myfs": {                          #             that give files that a_ops}
                "myfs_aops": (),
                "myfs_dax_aops": ("dax",),
            },
        }

and pytest runs every check below on real images, through the real engine, for every claimed
a_ops in every migrate mode. Each check is also a plain ``check_*`` method that raises
:class:`~hotremove.testing.helpers.ConformanceError` with a message naming the plugin, the rule
and the page, so the suite can be driven without pytest.

Capabilities a plugin does not have are *declared*, not deleted: ``unsupported = {"rebinding":
"writes dirty pages back"}`` turns the matching tests into skips that carry the reason
(``"first_pass[ext3_journalled_aops]"`` declares it for one a_ops only,
``"conformance[ext2_aops@ext2-seed2004]"`` leaves a deliberately buggy variant out, by name).
See :data:`CAPABILITIES`.

Answers are per kernel: the suite simulates ``kernel`` (a :mod:`hotremove.kernels` version;
default: the newest), asks the plugin's ``hotremove_migrate_strategy`` with it and builds its
machines with it. A suite per kernel whose answers differ (``class TestMinix61(...): kernel =
"6.1"``) pins them all; a table that kernel gives no ``migrate_folio`` is declared
``"answers[minix_aops]": "no migrate_folio before 6.8"`` — the plugin must answer ``None``
for it there, and its pages, served by the fallback, are not run as the plugin's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from hotremove.testing.cases import (
    BUFFER_CHECKS,
    BUFFER_RULES,
    CAPABILITIES,
    DATA_RULES,
    EXPLORER_MISSING,
    LOCK_CHECKS,
    LOCK_RULES,
    LOCKDEP_MISSING,
    MODES,
    Case,
    CaseRun,
    CaseUnavailable,
    carries_buffers,
    find_explorer,
)
from hotremove.testing.contract import ConformanceChecks
from hotremove.testing.helpers import ConformanceError, find_lockdep, small_scenario

if TYPE_CHECKING:
    from hotremove.kernels import Kernel
    from hotremove.plugins import PluginSet
    from hotremove.scenario import Scenario
    from hotremove.workload import Built


class ConformanceSuite(ConformanceChecks):
    """Subclass me (``class TestXConformance(ConformanceSuite)``) and declare the plugin; see
    :class:`~hotremove.testing.contract.ConformanceChecks` for what may be declared."""

    #: The kernel the suite simulates (a :mod:`hotremove.kernels` version; None: the default).
    kernel: ClassVar[str | None] = None

    # -- the suite's kernel ------------------------------------------------------------------
    def suite_kernel(self) -> Kernel:
        from hotremove.kernels import DEFAULT_KERNEL, get_kernel

        return get_kernel(self.kernel or DEFAULT_KERNEL)

    def check_declaration(self) -> None:
        from hotremove.errors import ScenarioError

        try:
            self.suite_kernel()
        except ScenarioError as exc:
            raise ConformanceError(f"{type(self).__name__}: kernel: {exc}") from None
        super().check_declaration()

    def _in_kernel(self, scenario: Scenario) -> Scenario:
        from hotremove.fs.registry import using

        if self.kernel is None:
            return scenario
        with using(self.registered_types()):
            return scenario.with_overrides(kernel={"version": self.kernel})

    def scenario_for(self, case: Case, mode: str) -> Scenario:
        return self._in_kernel(super().scenario_for(case, mode))

    def exploration_scenario(self, case: Case) -> Scenario:
        return self._in_kernel(super().exploration_scenario(case))

    def unavailable(self, case: Case) -> str | None:
        """Also not run: a table declared ``answers[...]`` (the fallback serves it in this
        kernel) and a filesystem type this kernel mounts with another driver, whose files get
        that driver's tables (ext3 in 6.x: the type's ``aops`` says so)."""
        kernel = self.suite_kernel()
        reason = self.declared("answers", case)
        if reason is not None:
            return (
                f"{case.id}: no migrate_folio in kernel {kernel} ({reason}): the fallback "
                "serves its pages"
            )
        driver = self._driver(case, kernel)
        if driver is not None and driver != case.fs_type:
            return (
                f"{case.id}: kernel {kernel} mounts {case.fs_type} images with the {driver} "
                f"driver, so no file gets {case.a_ops}"
            )
        return super().unavailable(case)

    def _driver(self, case: Case, kernel: Kernel) -> str | None:
        """Whose tables a file of the case's type and options gets in ``kernel`` (the
        ``fs_type`` of the table its type answers), or None when the type cannot say."""
        from hotremove.fs.tables import probe_config

        fs_type = self.registered_types().get(case.fs_type)
        if fs_type is None:
            return None
        try:
            return fs_type.aops(probe_config(fs_type, tuple(case.options)), kernel).fs_type
        except Exception:  # the run will say what is wrong
            return None

    def _ask(self, plugins: PluginSet, mapping: Any, policy: str) -> tuple[bool, Any]:
        """This plugin's ``hotremove_migrate_strategy`` alone, in the suite's kernel."""
        from hotremove.hooks import call_order, call_plugin

        hook = "hotremove_migrate_strategy"
        if self.plugin not in call_order(plugins.pm, hook):
            return False, None
        return True, call_plugin(
            plugins.pm, hook, self.plugin, mapping=mapping, policy=policy,
            kernel=self.suite_kernel(),
        )  # fmt: skip

    def check_answers_for_own(self, plugins: PluginSet, built: Built) -> None:
        """For every a_ops it claims, under ``auto``, it returns a MigrateStrategy — or
        ``None`` where it declares ``answers[a_ops]`` (no migrate_folio in this kernel)."""
        from hotremove.mm.migrate import MigrateStrategy

        claimed = set(self.claimed_aops())
        if not claimed:
            return
        none_here = {a for a in claimed if self.declared("answers", Case("", a)) is not None}
        for mapping in self.sample_mappings(built):
            name = mapping.a_ops.name
            if name not in claimed:
                continue
            implemented, answer = self._ask(plugins, mapping, "auto")
            if not implemented:
                raise ConformanceError(
                    f"plugin {self.plugin!r} claims {sorted(claimed)} but does not implement "
                    "hotremove_migrate_strategy"
                )
            if name in none_here:
                if answer is not None:
                    raise ConformanceError(
                        f"plugin {self.plugin!r} answered {answer!r} for {name} in kernel "
                        f"{self.suite_kernel()}, where it declares no migrate_folio "
                        f"({self.declared('answers', Case('', name))}): expected None"
                    )
                continue
            if not isinstance(answer, MigrateStrategy) or not isinstance(answer.rebinds, bool):
                raise ConformanceError(
                    f"plugin {self.plugin!r} answered {answer!r} for its own {name} under "
                    f"policy 'auto' in kernel {self.suite_kernel()}: expected a MigrateStrategy "
                    "(name: str, rebinds: bool, migrate_folio(mc, mapping, dst, src, mode)); "
                    f'if this kernel has none, declare "answers[{name}]"'
                )

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        names = metafunc.fixturenames
        if "conformance_case" not in names:
            return
        cases = [c for c in self.all_cases() if self.unavailable(c) is None]
        if "conformance_mode" not in names:
            metafunc.parametrize("conformance_case", cases, ids=[c.id for c in cases])
            return
        modes = getattr(metafunc.function, "conformance_modes", None) or self.modes
        pairs = [(c, m) for c in cases for m in self.modes if m in modes]
        metafunc.parametrize(
            ("conformance_case", "conformance_mode"),
            pairs,
            ids=[f"{c.id}-{m}" for c, m in pairs],
        )

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_runs(cls, tmp_path_factory: pytest.TempPathFactory) -> _Runs:
        """The engine runs of this suite, one per (case, mode), shared by its tests."""
        return _Runs(cls(), tmp_path_factory.mktemp(f"conformance-{cls.plugin}"))

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_plugins(cls) -> PluginSet:
        return cls().load()

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_sample(
        cls, tmp_path_factory: pytest.TempPathFactory, conformance_plugins: PluginSet
    ) -> Iterator[Built]:
        """A tiny machine with one filesystem of every type the suite's cases name (the
        scenario's default type when none can be built), for real inodes."""
        from hotremove.fs.registry import using
        from hotremove.scenario import DEFAULT_FS_TYPE
        from hotremove.testing.contract import image_size
        from hotremove.workload import build

        suite = cls()
        types = suite.registered_types()
        named = sorted({c.fs_type for c in suite.all_cases()} & set(types)) or [DEFAULT_FS_TYPE]
        kinds = [{"type": t, "files": 2, "size": image_size(types[t], 8 << 20)} for t in named]
        with using(types):
            scenario = small_scenario(*kinds)
        built = build(scenario, conformance_plugins.hooks, tmp_path_factory.mktemp("sample"))
        yield built
        built.machine.close()

    def _require(self, capability: str, case: Case | None = None) -> None:
        reason = self.declared(capability, case)
        if reason is not None:
            pytest.skip(
                f"{self.plugin} declares no {capability!r} ({CAPABILITIES[capability]}): {reason}"
            )

    def test_declaration_is_valid(self) -> None:
        self.check_declaration()

    def test_every_declared_case_can_run(self) -> None:
        """Cases this hotremove cannot build are left out of the per-case tests — and named
        here, so that a claim the suite could not exercise is never silent."""
        reasons = [r for c in self.all_cases() if (r := self.unavailable(c)) is not None]
        if reasons:
            pytest.skip("not exercised: " + "; ".join(reasons))

    def test_entry_point_loads(self) -> None:
        if self.plugin_object is not None:
            pytest.skip(f"{self.plugin} is tested as an object (plugin_object), not installed")
        self._require("entry_point")
        self.check_entry_point()

    def test_implements_only_known_hooks(self) -> None:
        self.check_hooks_known()

    def test_claims_what_it_declares(self, conformance_plugins: PluginSet) -> None:
        self.check_claims(conformance_plugins)

    def test_answers_for_its_own_mappings(
        self, conformance_plugins: PluginSet, conformance_sample: Built
    ) -> None:
        self.check_answers_for_own(conformance_plugins, conformance_sample)

    def test_returns_none_for_mappings_not_its_own(
        self, conformance_plugins: PluginSet, conformance_sample: Built
    ) -> None:
        self._require("not_mine_is_none")
        self.check_none_for_others(conformance_plugins, conformance_sample)

    def test_migration_keeps_data(self, conformance_runs, conformance_case, conformance_mode):
        self.check_data(conformance_runs.get(conformance_case, conformance_mode))

    def test_buffers_keep_state_and_block_mapping(
        self, conformance_runs, conformance_case, conformance_mode
    ):
        self.check_buffers(conformance_runs.get(conformance_case, conformance_mode))

    def test_rebinding_strategy_issues_no_writeback(
        self, conformance_runs, conformance_case, conformance_mode
    ):
        self.check_rebinding_issues_no_writeback(
            conformance_runs.get(conformance_case, conformance_mode)
        )

    def test_pages_with_buffers_are_rebound(
        self, conformance_runs, conformance_case, conformance_mode
    ):
        self._require("rebinding", conformance_case)
        self.check_rebinds(conformance_runs.get(conformance_case, conformance_mode))

    def test_locks_and_refcounts_balance(
        self, conformance_runs, conformance_case, conformance_mode
    ):
        self.check_locks(conformance_runs.get(conformance_case, conformance_mode))

    def test_moves_in_the_first_pass(self, conformance_runs, conformance_case, conformance_mode):
        self._require("first_pass", conformance_case)
        self.check_first_pass(conformance_runs.get(conformance_case, conformance_mode))

    def test_buffers_locked_by_io(self, conformance_runs, conformance_case, conformance_mode):
        self._require("contention", conformance_case)
        if carries_buffers(conformance_case.a_ops):  # else: nothing to contend for
            self.check_contention(
                conformance_runs.get(conformance_case, conformance_mode, contended=True)
            )

    test_buffers_locked_by_io.conformance_modes = ("async", "sync")  # type: ignore[attr-defined]

    def test_lock_order_checker_ran(self, conformance_runs) -> None:
        """Visible when the lock-order checker is missing; otherwise every run had it on (and
        check_locks saw its reports)."""
        if find_lockdep() is None:
            pytest.skip(LOCKDEP_MISSING)
        cases = [c for c in self.all_cases() if self.unavailable(c) is None]
        if not cases:
            pytest.skip("no case to run (see test_every_declared_case_can_run)")
        assert conformance_runs.get(cases[0], self.modes[-1]).run.lockdep

    def test_bounded_exploration(self, tmp_path: Path) -> None:
        if find_explorer() is None:
            pytest.skip(EXPLORER_MISSING)
        explored, unavailable = 0, []
        for case in self.all_cases():
            if self.unavailable(case) is not None:
                continue  # named by test_every_declared_case_can_run
            try:
                self.check_exploration(case, tmp_path / case.id)
                explored += 1
            except CaseUnavailable as exc:
                unavailable.append(str(exc))
        if unavailable or not explored:
            pytest.skip("; ".join(unavailable) or "no case to explore")


class _Runs:
    """Runs shared by the tests of one suite class: one build and offline per (case, mode)."""

    def __init__(self, suite: ConformanceSuite, workdir: Path) -> None:
        self.suite = suite
        self.workdir = workdir
        self._runs: dict[tuple[Case, str, bool], CaseRun | BaseException] = {}

    def get(self, case: Case, mode: str, *, contended: bool = False) -> CaseRun:
        key = (case, mode, contended)
        if key not in self._runs:
            workdir = self.workdir / f"{case.id}-{mode}{'-contended' if contended else ''}"
            try:
                self._runs[key] = self.suite.run_case(case, mode, workdir, contended=contended)
            except (CaseUnavailable, ConformanceError) as exc:
                self._runs[key] = exc
            except Exception as exc:
                error = ConformanceError(
                    f"plugin {self.suite.plugin!r}, {case.id} in {mode}: the run crashed: "
                    f"{type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                self._runs[key] = error
        got = self._runs[key]
        if isinstance(got, CaseUnavailable):
            pytest.skip(str(got))
        if isinstance(got, BaseException):
            raise got
        return got


__all__ = [
    "BUFFER_CHECKS",
    "BUFFER_RULES",
    "CAPABILITIES",
    "DATA_RULES",
    "EXPLORER_MISSING",
    "LOCKDEP_MISSING",
    "LOCK_CHECKS",
    "LOCK_RULES",
    "MODES",
    "Case",
    "CaseRun",
    "CaseUnavailable",
    "ConformanceChecks",
    "ConformanceSuite",
    "find_explorer",
]
