"""Build the plugin manager: entry points loaded one at a time, every failure reported.

A plugin that fails to import, implements a hook that does not exist, or registers an a_ops
another plugin already claimed is recorded in the load report (shown by ``hotremove
plugins``) and left out; the others keep working. Environment switches:

* ``HOTREMOVE_DISABLE_PLUGIN_AUTOLOAD=1`` — load no entry points (tests add plugins by hand);
* ``HOTREMOVE_PLUGINS=ext2,generic_writeback`` — load only these entry points;
* ``HOTREMOVE_TRACE_HOOKS=1`` — log every hook call through structlog (debug level).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
import structlog

from hotremove import hookspecs
from hotremove.errors import HotremoveError
from hotremove.fs.fstype import FilesystemType
from hotremove.fs.registry import TYPE_NAME as TYPE_NAME  # what a type may be called
from hotremove.fs.registry import collect_types
from hotremove.hooks import Hooks, call_order, call_plugin
from hotremove.kernels import KERNELS
from hotremove.model.migrate_mode import DEFAULT_POLICY

ENTRY_POINT_GROUP = "hotremove"
log = structlog.get_logger("hotremove.plugins")


@dataclass
class PluginInfo:
    """One line of the load report."""

    name: str
    dist: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    fs_types: list[str] = field(default_factory=list)
    aops: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    #: the filesystem types it registered (``hotremove_register_filesystem_types``)
    types: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "hooks": self.hooks,
            "fs_types": self.fs_types,
            "aops": self.aops,
            "policies": self.policies,
            "types": self.types,
            "error": self.error,
        }


@dataclass
class PluginSet:
    """A ready plugin manager, its facade and what loading found."""

    pm: pluggy.PluginManager
    hooks: Hooks
    report: list[PluginInfo]
    aops_owner: dict[str, str]  # a_ops name → plugin name
    policies: dict[str, str]  # strategy variant → plugin name
    #: filesystem type name → (its FilesystemType, the plugin that registered it)
    fs_types: dict[str, tuple[FilesystemType, str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[PluginInfo]:
        return [p for p in self.report if p.error]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _allow_list() -> set[str] | None:
    raw = os.environ.get("HOTREMOVE_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(caller.name for caller in callers)


def _register(pm: pluggy.PluginManager, info: PluginInfo, plugin: object) -> bool:
    """Register one plugin and validate it; on any problem unregister it and record why."""
    try:
        pm.register(plugin, name=info.name)
    except Exception as exc:  # a plugin's bug must not take the CLI down
        info.error = f"{type(exc).__name__}: {exc}"
        return False
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        info.error = f"PluginValidationError: {exc}"
        return False
    info.hooks = _hook_names(pm, plugin)
    return True


def _load_entry_point(ep: EntryPoint) -> tuple[PluginInfo, object | None]:
    dist = ep.dist
    info = PluginInfo(
        name=ep.name,
        dist=dist.metadata["Name"] if dist else None,
        version=dist.version if dist else None,
    )
    try:
        return info, ep.load()
    except Exception as exc:
        info.error = f"{type(exc).__name__}: {exc}"
        log.warning("plugin_load_failed", plugin=ep.name, error=info.error)
        return info, None


def _collect_filesystems(
    pm: pluggy.PluginManager, report: list[PluginInfo]
) -> tuple[dict[str, str], dict[str, str]]:
    """Call the register hook plugin by plugin, validating and attributing each claim. Claims
    are first come, first served in load order (entry points sorted by name)."""
    by_name = {info.name: info for info in report}
    aops_owner: dict[str, str] = {}
    policy_owner: dict[str, str] = {}
    for impl in pm.hook.hotremove_register_filesystems.get_hookimpls():
        name = impl.plugin_name
        info = by_name.setdefault(name, PluginInfo(name=name))

        def register(
            fs_type: str,
            aops: Iterable[str] = (),
            description: str = "",
            policies: Iterable[str] = (),
            *,
            _info: PluginInfo = info,
        ) -> None:
            if not isinstance(fs_type, str) or not fs_type:
                raise TypeError(f"fs_type must be a non-empty string, got {fs_type!r}")
            names = list(aops)
            if not all(isinstance(n, str) and n for n in names):
                raise TypeError(f"aops must be strings, got {names!r}")
            for name in names:
                owner = aops_owner.get(name)
                if owner is not None and owner != _info.name:
                    raise ValueError(f"a_ops {name!r} is already claimed by plugin {owner!r}")
            for name in names:
                aops_owner[name] = _info.name
            for policy in policies:
                policy_owner[str(policy)] = _info.name
                _info.policies.append(str(policy))
            _info.fs_types.append(fs_type)
            _info.aops.extend(names)

        try:
            call_plugin(pm, "hotremove_register_filesystems", name, register=register)
        except Exception as exc:
            info.error = f"hotremove_register_filesystems: {type(exc).__name__}: {exc}"
            log.warning("plugin_register_failed", plugin=info.name, error=info.error)
    return aops_owner, policy_owner


def _collect_fs_types(
    pm: pluggy.PluginManager, report: list[PluginInfo]
) -> dict[str, tuple[FilesystemType, str]]:
    """The types each plugin registers (:func:`hotremove.fs.registry.collect_types`), listed
    on its line of the load report; a failed registration is that plugin's error."""
    by_name = {info.name: info for info in report}

    def failed(plugin: str, message: str) -> None:
        by_name.setdefault(plugin, PluginInfo(name=plugin)).error = message

    types = collect_types(pm, failed)
    for type_name, (_fs_type, plugin) in types.items():
        by_name.setdefault(plugin, PluginInfo(name=plugin)).types.append(type_name)
    return types


def _probe_strategies(
    pm: pluggy.PluginManager, report: list[PluginInfo], types: Iterable[FilesystemType]
) -> None:
    """Ask every plugin's ``hotremove_migrate_strategy`` about each table the files of
    ``types`` get (:func:`hotremove.fs.tables.all_tables`) once, at load time: a plugin that
    raises or answers with something that is not a strategy is reported by name and left
    out, before any run depends on it."""
    from hotremove.fs.tables import all_tables
    from hotremove.mm.migrate import MigrateStrategy
    from hotremove.model.address_space import probe_mapping

    tables = all_tables(types)

    by_name = {info.name: info for info in report}
    hook = "hotremove_migrate_strategy"
    for name in call_order(pm, hook):
        for kernel, a_ops in itertools.product(KERNELS.values(), tables.values()):
            mapping = probe_mapping(a_ops)
            try:
                result = call_plugin(
                    pm, hook, name, mapping=mapping, policy=DEFAULT_POLICY, kernel=kernel
                )
            except Exception as exc:
                error = f"hotremove_migrate_strategy raised {type(exc).__name__}: {exc}"
            else:
                if result is None or isinstance(result, MigrateStrategy):
                    continue
                error = (
                    f"hotremove_migrate_strategy returned {type(result).__name__} for "
                    f"{a_ops.name} (expected a MigrateStrategy or None)"
                )
            info = by_name.setdefault(name, PluginInfo(name=name))
            info.error = error
            log.warning("plugin_rejected", plugin=name, error=error)
            plugin = pm.get_plugin(name)
            if plugin is not None:
                pm.unregister(plugin)
            break


def load_plugins(
    *,
    autoload: bool | None = None,
    allow: Sequence[str] | None = None,
    extra: Sequence[tuple[str, object]] = (),
) -> PluginSet:
    """Create the plugin manager: entry points (sorted by name) unless autoload is off, plus
    ``extra`` ``(name, plugin)`` pairs — how tests and the conformance kit add plugins."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = not _env_flag("HOTREMOVE_DISABLE_PLUGIN_AUTOLOAD")
    allowed = set(allow) if allow is not None else _allow_list()
    report: list[PluginInfo] = []
    if autoload:
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        for ep in eps:
            if allowed is not None and ep.name not in allowed:
                continue
            info, plugin = _load_entry_point(ep)
            report.append(info)
            if plugin is not None:
                _register(pm, info, plugin)
        unknown = sorted((allowed or set()) - {ep.name for ep in eps})
        if unknown and allow is None:  # a typo would silently load fewer plugins: say so
            raise HotremoveError(
                f"HOTREMOVE_PLUGINS: no installed plugin is named {unknown[0]!r} (installed: "
                f"{', '.join(ep.name for ep in eps) or 'none'})"
            )
    for name, plugin in extra:
        info = PluginInfo(name=name)
        report.append(info)
        _register(pm, info, plugin)
    aops_owner, policies = _collect_filesystems(pm, report)
    fs_types = _collect_fs_types(pm, report)
    _probe_strategies(pm, report, _probed_types(fs_types))
    trace = _env_flag("HOTREMOVE_TRACE_HOOKS")
    if trace:
        pm.add_hookcall_monitoring(
            lambda name, impls, kwargs: log.debug(
                "hook_call", hook=name, plugins=[i.plugin_name for i in impls]
            ),
            lambda outcome, name, impls, kwargs: None,
        )
    hooks = Hooks(pm, trace=trace, fs_types={n: t for n, (t, _p) in fs_types.items()})
    return PluginSet(pm, hooks, report, aops_owner, policies, fs_types)


def _probed_types(fs_types: dict[str, tuple[FilesystemType, str]]) -> list[FilesystemType]:
    """The plugin set's types and the installed ones (a plugin set of one strategy plugin
    still meets every installed type's files): what the strategy probe asks about."""
    from hotremove.fs.registry import installed_types

    return list({**installed_types(), **{n: t for n, (t, _p) in fs_types.items()}}.values())
