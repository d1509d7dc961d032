"""The conformance suite's checks as plain methods: declaration, loading, answers, engine runs
over real images and what each run must show. :class:`ConformanceChecks` knows nothing of
pytest; :class:`~hotremove.testing.conformance.ConformanceSuite` adds the pytest layer. Every
``check_*`` raises :class:`~hotremove.testing.helpers.ConformanceError` naming the plugin, the
rule and the page.

Longer than 450 lines because it is the contract itself, one short method per rule a plugin is
held to; a plugin author reads the rules here side by side, and splitting them by topic would
separate each rule from the run whose outcome it checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hotremove.testing.cases import (
    BUFFER_CHECKS,
    BUFFER_RULES,
    CAPABILITIES,
    DATA_RULES,
    EXPLORER_MISSING,
    FOREIGN_AOPS,
    FOREIGN_POLICY,
    LOCK_CHECKS,
    LOCK_RULES,
    MODES,
    Case,
    CaseRun,
    CaseUnavailable,
    IoCompletion,
    canonical,
    find_explorer,
)
from hotremove.testing.helpers import (
    ConformanceError,
    cached_pages_before,
    run_offline,
    small_scenario,
    strict_plugins,
)
from hotremove.testing.probe import StrategyProbe

if TYPE_CHECKING:
    from hotremove.model.buffer_head import BufferHead
    from hotremove.plugins import PluginSet
    from hotremove.workload import Built


class ConformanceChecks:
    """The declaration a plugin's suite makes, and every check over it (no pytest here)."""

    #: The plugin's entry-point name (group ``hotremove``).
    plugin: ClassVar[str] = ""
    #: fs type → {a_ops the plugin claims: mount options that give files that a_ops}.
    filesystems: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = {}
    #: The distribution that must provide the entry point (optional).
    dist: ClassVar[str | None] = None
    #: Strategy variants the plugin registers (``remove.strategy`` values).
    policies: ClassVar[Sequence[str]] = ()
    #: Other entry points the plugin needs loaded beside it (the suite loads only these).
    also_load: ClassVar[Sequence[str]] = ()
    #: Capabilities the plugin lacks → why (``"cap"`` or ``"cap[a_ops]"``); see CAPABILITIES.
    unsupported: ClassVar[Mapping[str, str]] = {}
    #: Cases to run (default: one per claimed a_ops under "auto", and one per declared policy).
    cases: ClassVar[Sequence[Case] | None] = None
    modes: ClassVar[Sequence[str]] = MODES
    block_size: ClassVar[int] = 1024
    #: Seeded schedules the interleaving explorer runs per case (when it exists).
    explore_bound: ClassVar[int] = 40
    #: Test a plugin object that is not installed (the entry-point test is then skipped).
    plugin_object: ClassVar[object | None] = None

    # -- the declaration -------------------------------------------------------------------
    def claimed_aops(self) -> list[str]:
        return sorted(a for table in self.filesystems.values() for a in table)

    def all_cases(self) -> list[Case]:
        if self.cases is not None:
            return list(self.cases)
        cases = [
            Case(fs, a_ops, tuple(options))
            for fs, table in self.filesystems.items()
            for a_ops, options in table.items()
        ]
        return cases + [
            Case(c.fs_type, c.a_ops, c.options, policy) for policy in self.policies for c in cases
        ]

    def declared(self, capability: str, case: Case | None = None) -> str | None:
        """Why the plugin lacks ``capability`` — for this case (``cap[a_ops@policy]``), its
        table (``cap[a_ops]``) or at all (``cap``) — or None when it claims it."""
        keys = [f"{capability}[{case.id}]", f"{capability}[{case.a_ops}]"] if case else []
        for key in [*keys, capability]:
            if key in self.unsupported:
                return self.unsupported[key]
        return None

    def check_declaration(self) -> None:
        problems = []
        if not self.plugin:
            problems.append("set `plugin` to the plugin's entry-point name")
        for key in self.unsupported:
            if key.split("[", 1)[0] not in CAPABILITIES:
                problems.append(
                    f"unsupported: unknown capability {key!r} (known: {', '.join(CAPABILITIES)})"
                )
        for mode in self.modes:
            if mode not in MODES:
                problems.append(f"modes: unknown migrate mode {mode!r} (known: {MODES})")
        if not self.all_cases():
            problems.append("no case to run: declare `filesystems` (or `cases` for a fallback)")
        if problems:
            raise ConformanceError(f"{type(self).__name__}: " + "; ".join(problems))

    # -- loading ---------------------------------------------------------------------------
    def load(self, *extra: tuple[str, object]) -> PluginSet:
        """A strict plugin set with only this plugin (and ``also_load``) in it."""
        if self.plugin_object is not None:
            return strict_plugins(
                (self.plugin, self.plugin_object),
                *extra,
                allow=list(self.also_load),
                autoload=bool(self.also_load),
            )
        return strict_plugins(*extra, allow=[self.plugin, *self.also_load])

    def check_entry_point(self) -> object:
        """The entry point exists (once), comes from ``dist`` and loads; returns the plugin."""
        eps = [ep for ep in entry_points(group="hotremove") if ep.name == self.plugin]
        if not eps:
            raise ConformanceError(
                f"no entry point named {self.plugin!r} in group 'hotremove': is the package "
                f"installed, and does its pyproject.toml say [project.entry-points.hotremove] "
                f'{self.plugin} = "<module>"?'
            )
        if len(eps) > 1:
            dists = sorted(str(ep.dist.metadata["Name"]) if ep.dist else "?" for ep in eps)
            raise ConformanceError(f"entry point {self.plugin!r} is provided twice: {dists}")
        ep = eps[0]
        if self.dist is not None:
            got = ep.dist.metadata["Name"] if ep.dist else None
            if got is None or canonical(got) != canonical(self.dist):
                raise ConformanceError(
                    f"entry point {self.plugin!r} comes from {got!r}, not {self.dist!r}"
                )
        try:
            return ep.load()
        except Exception as exc:
            raise ConformanceError(
                f"entry point {self.plugin!r} ({ep.value}) fails to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def plugin_module(self) -> object:
        return self.plugin_object if self.plugin_object is not None else self.check_entry_point()

    def check_hooks_known(self) -> None:
        """Every hook implementation has a spec (``check_pending``), and every ``hotremove_*``
        function is marked ``@hotremove.hookimpl`` (pluggy silently ignores unmarked ones)."""
        import pluggy

        from hotremove import hookspecs

        plugin = self.plugin_module()
        pm = pluggy.PluginManager("hotremove")
        pm.add_hookspecs(hookspecs)
        pm.register(plugin, name=self.plugin)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise ConformanceError(f"plugin {self.plugin!r}: {exc}") from None
        unmarked = [
            name
            for name in dir(plugin)
            if name.startswith("hotremove_")
            and callable(getattr(plugin, name))
            and pm.parse_hookimpl_opts(plugin, name) is None
        ]
        if unmarked:
            raise ConformanceError(
                f"plugin {self.plugin!r}: {', '.join(unmarked)} not marked @hotremove.hookimpl "
                "(pluggy ignores them)"
            )
        if not pm.get_hookcallers(plugin):
            raise ConformanceError(f"plugin {self.plugin!r} implements no hook")

    def check_claims(self, plugins: PluginSet) -> None:
        """It registers exactly the fs types, a_ops and policies the suite declares."""
        info = next((i for i in plugins.report if i.name == self.plugin), None)
        if info is None:
            raise ConformanceError(f"plugin {self.plugin!r} is not in the load report")
        got = (sorted(info.fs_types), sorted(info.aops), sorted(info.policies))
        want = (sorted(self.filesystems), self.claimed_aops(), sorted(self.policies))
        if got != want:
            raise ConformanceError(
                f"plugin {self.plugin!r} registers filesystems {got[0]}, a_ops {got[1]}, "
                f"policies {got[2]}; its suite declares filesystems {want[0]}, a_ops {want[1]}, "
                f"policies {want[2]}: a plugin claims exactly what it says"
            )
        taken = {a: o for a in want[1] if (o := plugins.aops_owner.get(a)) != self.plugin}
        if taken:
            raise ConformanceError(f"a_ops claimed by other plugins: {taken}")

    # -- answers ---------------------------------------------------------------------------
    def registered_types(self) -> dict[str, Any]:
        """The filesystem types this hotremove can build: the installed plugins', and those
        of ``plugin_object`` when the suite tests one that is not installed."""
        from hotremove.fs.registry import installed_types

        types = dict(installed_types())
        if self.plugin_object is not None:
            key = (type(self), id(self.plugin_object))
            if key not in _OBJECT_TYPES:
                _OBJECT_TYPES[key] = {n: t for n, (t, _p) in self.load().fs_types.items()}
            types.update(_OBJECT_TYPES[key])
        return types

    def sample_mappings(self, built: Built) -> list[Any]:
        """One mapping per table the registered types' files get, per claimed a_ops and one
        nobody knows, each on a real inode of a matching filesystem."""
        from hotremove.fs.tables import all_tables
        from hotremove.model.address_space import AddressSpace, AddressSpaceOps

        hosts = {m.host.i_sb.s_type: m.host for m in reversed(built.machine.mappings)}
        tables = all_tables(self.registered_types().values())
        for fs, table in self.filesystems.items():
            for a_ops in table:
                tables.setdefault(a_ops, AddressSpaceOps(a_ops, fs))
        tables[FOREIGN_AOPS] = AddressSpaceOps(FOREIGN_AOPS, "conformancefs")
        fallback_host = built.machine.mappings[0].host
        return [AddressSpace(hosts.get(ops.fs_type, fallback_host), ops) for ops in tables.values()]

    def _ask(self, plugins: PluginSet, mapping: Any, policy: str) -> tuple[bool, Any]:
        """Call this plugin's ``hotremove_migrate_strategy`` alone: (implemented, answer)."""
        from hotremove.hooks import call_order, call_plugin
        from hotremove.kernels import DEFAULT_KERNEL, get_kernel

        hook = "hotremove_migrate_strategy"
        if self.plugin not in call_order(plugins.pm, hook):
            return False, None
        kernel = get_kernel(DEFAULT_KERNEL)
        return True, call_plugin(
            plugins.pm, hook, self.plugin, mapping=mapping, policy=policy, kernel=kernel
        )

    def check_answers_for_own(self, plugins: PluginSet, built: Built) -> None:
        """For every a_ops it claims, under ``auto``, it returns a MigrateStrategy."""
        from hotremove.mm.migrate import MigrateStrategy

        claimed = set(self.claimed_aops())
        for mapping in self.sample_mappings(built):
            if mapping.a_ops.name not in claimed:
                continue
            implemented, answer = self._ask(plugins, mapping, "auto")
            if not implemented:
                raise ConformanceError(
                    f"plugin {self.plugin!r} claims {sorted(claimed)} but does not implement "
                    "hotremove_migrate_strategy"
                )
            if not isinstance(answer, MigrateStrategy) or not isinstance(answer.rebinds, bool):
                raise ConformanceError(
                    f"plugin {self.plugin!r} answered {answer!r} for its own "
                    f"{mapping.a_ops.name} under policy 'auto': expected a MigrateStrategy "
                    "(name: str, rebinds: bool, migrate_folio(mc, mapping, dst, src, mode))"
                )

    def check_none_for_others(self, plugins: PluginSet, built: Built) -> None:
        """``None`` for a_ops it does not claim (under any policy) and for its own under
        policies it does not offer ("writeback" belongs to the fallback)."""
        claimed = set(self.claimed_aops())
        offered = {"auto", *self.policies}
        wrong = []
        for mapping in self.sample_mappings(built):
            for policy in ("auto", "writeback", FOREIGN_POLICY, *self.policies):
                if mapping.a_ops.name in claimed and policy in offered:
                    continue
                _, answer = self._ask(plugins, mapping, policy)
                if answer is not None:
                    wrong.append(f"{mapping.a_ops.name} under policy {policy!r} -> {answer!r}")
        if wrong:
            raise ConformanceError(
                f"plugin {self.plugin!r} answered for mappings that are not its own (it must "
                "return None so the next plugin can answer):\n  " + "\n  ".join(wrong)
            )

    # -- engine runs -----------------------------------------------------------------------
    def scenario_for(self, case: Case, mode: str) -> Any:
        from hotremove.errors import ScenarioError
        from hotremove.fs.registry import using

        types = self.registered_types()
        if case.fs_type not in types:
            raise CaseUnavailable(
                f"hotremove cannot build {case.fs_type!r} images (no installed plugin "
                f"registers that type; registered: {', '.join(sorted(types)) or 'none'})"
            )
        fs = {
            "type": case.fs_type,
            "block_size": self.block_size,
            "options": list(case.options),
            "size": image_size(types[case.fs_type], 8 << 20),
        }
        try:
            with using(types):
                return small_scenario(
                    fs, mode=mode, strategy=case.policy, dirty=0.5, dirty_buffers="partial"
                )
        except ScenarioError as exc:
            raise CaseUnavailable(
                f"this hotremove cannot build {case.fs_type} with options {list(case.options)} "
                f"for {case.a_ops}: {exc}"
            ) from None

    def unavailable(self, case: Case) -> str | None:
        """Why ``case`` is not run: declared (``unsupported["conformance[...]"]``), or this
        hotremove cannot build it (a type no plugin registers, an option the type refuses)."""
        reason = self.declared("conformance", case)
        if reason is not None:
            return f"{case.id}: {self.plugin} declares it does not conform: {reason}"
        try:
            self.scenario_for(case, "sync")
        except CaseUnavailable as exc:
            return str(exc)
        return None

    def run_case(self, case: Case, mode: str, workdir: Path, *, contended: bool = False) -> CaseRun:
        """Build the case's machine over real images, offline block 1 in ``mode`` with every
        strategy call probed, then verify the images. ``contended``: every other page with
        buffers has one buffer locked by simulated I/O, completed when the migrating task
        sleeps on it or between passes."""
        from hotremove.model.buffer_head import BH_Lock
        from hotremove.sim.verify import verify
        from hotremove.workload import build

        scenario = self.scenario_for(case, mode)
        inflight: set[BufferHead] = set()
        io = IoCompletion(inflight)
        plugins = self.load(("conformance_io_completion", io)) if contended else self.load()
        built = build(scenario, plugins.hooks, workdir)
        try:
            got = sorted({m.a_ops.name for m in built.machine.mappings})
            if got != [case.a_ops]:
                raise ConformanceError(
                    f"{case.fs_type} files mounted with options {list(case.options)} get "
                    f"{got}, not {case.a_ops!r}: fix the options declared for {case.a_ops}"
                )
            probe = StrategyProbe(built.machine)
            probe.inflight = inflight
            contended_bhs: list[BufferHead] = []
            if contended:
                with_buffers = [s for s in cached_pages_before(built, [1]) if s.buffers]
                for shot in with_buffers[::2]:
                    bh = shot.buffers[0][0]
                    bh.b_state |= BH_Lock  # type: ignore[attr-defined]
                    inflight.add(bh)  # type: ignore[arg-type]
                    contended_bhs.append(bh)  # type: ignore[arg-type]
                built.machine.task.waiter = io.complete
            run = run_offline(built, plugins, mode=mode, policy=case.policy, probe=probe)
            verdict = verify(built, plugins.hooks)
        finally:
            built.machine.close()
        return CaseRun(case, mode, run, verdict, contended_bhs)

    # -- checks over a run -----------------------------------------------------------------
    def _fail(self, run: CaseRun, what: str, problems: list[str]) -> None:
        if problems:
            shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if problems[8:] else [])
            raise ConformanceError(
                f"plugin {self.plugin!r}, {run.case.id} in {run.mode}: {what}:\n  "
                + "\n  ".join(shown)
            )

    def check_served(self, run: CaseRun) -> None:
        stats = run.run.result.per_aops.get(run.case.a_ops)
        if stats is None or stats.plugin != self.plugin:
            raise ConformanceError(
                f"{run.case.a_ops} pages were migrated by "
                f"{stats.plugin if stats else 'nobody'!r}, not by plugin {self.plugin!r}"
            )
        if not run.run.shots:
            raise ConformanceError(f"the removed block holds no {run.case.a_ops} page")

    def check_data(self, run: CaseRun) -> None:
        """The offline completed; bytes, flags and the page cache survived; the images are
        consistent (their filesystems' checkers) and every file reads back as the golden
        model says."""
        self.check_served(run)
        result = run.run.result
        problems = [] if result.offlined else [f"offline failed: {result.failed[:5]}"]
        problems += run.problems(DATA_RULES)
        problems += run.failures(exclude=BUFFER_CHECKS | LOCK_CHECKS)
        verdict = run.verdict
        for name, fsck in verdict.fsck.items():
            if not fsck["ok"]:
                checker = fsck.get("checker", "fsck")
                problems.append(f"{checker} on {name} is not clean: {fsck['summary']}")
        problems += [
            f"after sync, {m.get('fs', m.get('anon'))}:{m.get('file', m.get('vpn'))} differs "
            f"from the golden model at byte {m.get('offset')}"
            for m in verdict.mismatches
        ]
        self._fail(run, "data did not survive the migration", problems)

    def check_buffers(self, run: CaseRun) -> None:
        """Each buffer keeps its own dirty state and maps the block the file says."""
        problems = run.problems(BUFFER_RULES) + run.run.block_map_problems
        problems += run.failures(BUFFER_CHECKS)
        self._fail(run, "buffer_heads lost their state or block mapping", problems)

    def check_rebinding_issues_no_writeback(self, run: CaseRun) -> None:
        """A strategy that says it rebinds issues no writeback."""
        self._fail(run, "a strategy claiming rebinds=True wrote", run.problems({"no_writeback"}))

    def check_rebinds(self, run: CaseRun) -> None:
        """Pages that carry buffers move by rebinding: their own buffer_heads, no I/O."""
        problems = [
            f"strategy {c.strategy!r} has rebinds=False for {c.a_ops} pages with buffers"
            for c in run.run.calls
            if c.had_buffers and not c.rebinds
        ][:1]
        problems += run.problems({"rebinding", "no_writeback"})
        self._fail(run, "pages with buffers were not rebound", problems)

    def check_locks(self, run: CaseRun) -> None:
        """Locks and refcounts balance; nothing sleeps in ASYNC; the lock checker (and any
        lock-order checker that reports into ``machine.task.violations``) finds nothing."""
        problems = run.problems(LOCK_RULES) + run.failures(LOCK_CHECKS)
        problems += [v.message for v in run.run.violations]
        self._fail(run, "locks or references are unbalanced", problems)

    def check_first_pass(self, run: CaseRun) -> None:
        result = run.run.result
        if result.passes != 1 or result.retries:
            self._fail(
                run,
                "pages did not all move in the first pass",
                [f"{result.passes} passes, retries {dict(result.retries)}"],
            )

    def check_contention(self, run: CaseRun) -> None:
        """With buffers locked by I/O: no page moves under its I/O, ASYNC backs off, every
        check of the plain run still holds."""
        self.check_data(run)
        self.check_buffers(run)
        self.check_locks(run)

    def exploration_scenario(self, case: Case) -> Any:
        """A tiny machine for the explorer (every schedule migrates the whole region): one
        filesystem of the case, 4 files of 3 pages, memory block 0 holding all of them."""
        from hotremove.errors import ScenarioError
        from hotremove.fs.registry import using
        from hotremove.scenario import validate

        self.scenario_for(case, "sync")  # raises CaseUnavailable for what cannot be built
        fs = {
            "name": "fs0",
            "type": case.fs_type,
            "block_size": self.block_size,
            "options": list(case.options),
            "size": image_size(self.registered_types()[case.fs_type], 2 << 20),
            "files": 4,
            "file_size": "12KiB",
        }
        data = {
            "memory": {"size": "256KiB", "block_size": "64KiB"},
            "filesystem": [fs],
            "workload": {"seed": 1, "dirty": 0.5, "placement": "fill"},
            "remove": {"blocks": [0], "mode": "sync", "strategy": case.policy},
        }
        try:
            with using(self.registered_types()):
                return validate(data)
        except ScenarioError as exc:
            raise CaseUnavailable(f"{case.id}: no tiny machine for the explorer: {exc}") from None

    def check_exploration(self, case: Case, workdir: Path) -> None:
        """``explore_bound`` seeded schedules of the interleaving explorer (the offline racing
        a flusher, writers, readers, kjournald and I/O completion, preempted at every lock
        operation) find nothing — when this hotremove has the explorer."""
        from hotremove.model.migrate_mode import MigrateMode
        from hotremove.workload import build

        explorer_class = find_explorer()
        if explorer_class is None:
            raise CaseUnavailable(EXPLORER_MISSING)
        scenario = self.exploration_scenario(case)
        plugins = self.load()
        built = build(scenario, plugins.hooks, workdir)
        try:
            explorer = explorer_class(
                built.machine,
                plugins.hooks,
                list(scenario.remove.blocks),
                mode=MigrateMode.SYNC,
                policy=case.policy,
                golden=built.golden.files.hold(),
            )
            try:
                result = explorer.explore(1, self.explore_bound)
            finally:
                explorer.close()
        finally:
            built.machine.close()
        problems = [str(p) for p in result.problems]
        if problems:
            raise ConformanceError(
                f"plugin {self.plugin!r}, {case.id}: the interleaving explorer found "
                f"(replay: seed 1):\n  " + "\n  ".join(problems[:8])
            )


def image_size(fs_type: Any, small: int) -> int:
    """``small`` bytes, or the smallest image the type's tools make when that is larger (an
    image's size costs no simulated memory)."""
    return max(small, int(getattr(fs_type, "min_size", 0)))


#: the types of the plugin objects suites test (loaded once per suite class and object)
_OBJECT_TYPES: dict[tuple[type, int], dict[str, Any]] = {}

__all__ = ["ConformanceChecks"]
