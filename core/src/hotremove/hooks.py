"""Typed facade over ``pm.hook``: the only way the core calls plugins.

Besides types, the facade attributes answers to plugins. Every call goes through pluggy's own
machinery (hook wrappers, ``add_hookcall_monitoring``, ``HOTREMOVE_TRACE_HOOKS``): a
``firstresult`` hook whose answer must be attributed asks the plugins one at a time, in
pluggy's call order, through :func:`call_plugin` — a ``subset_hook_caller`` that leaves out
every other plugin — so the report can say which plugin serves which a_ops and a plugin that
returns the wrong type is named in the error. The loader and the conformance kit use the same
helper when they ask one plugin alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from hotremove.errors import HotremoveError
from hotremove.kernels import DEFAULT_KERNEL, Kernel, get_kernel
from hotremove.mm.migrate import MigrateStrategy

if TYPE_CHECKING:
    from hotremove.fs.fstype import FilesystemType
    from hotremove.model.address_space import AddressSpace, SuperBlock
    from hotremove.model.machine import Machine
    from hotremove.model.migrate_mode import MigrateMode

log = structlog.get_logger("hotremove.hooks")


class PluginError(HotremoveError):
    """A plugin broke the hook contract at run time (the message names the plugin)."""


def call_order(pm: pluggy.PluginManager, hook: str) -> list[str]:
    """The plugins implementing ``hook``, in the order pluggy calls them (tryfirst … trylast),
    wrappers excluded."""
    caller: pluggy.HookCaller = getattr(pm.hook, hook)
    return [
        impl.plugin_name
        for impl in reversed(caller.get_hookimpls())
        if not (impl.hookwrapper or getattr(impl, "wrapper", False))
    ]


def plugin_caller(pm: pluggy.PluginManager, hook: str, plugin: str) -> Callable[..., Any]:
    """``hook`` of the plugin named ``plugin`` alone, as a pluggy hook caller (its wrappers
    and monitoring still run): call it with the hook's keyword arguments."""
    others = [
        p
        for name, p in pm.list_name_plugin()
        if name != plugin and p is not None and not pm.is_blocked(name)
    ]
    subset = pm.subset_hook_caller(hook, remove_plugins=others)
    spec = getattr(pm.hook, hook).spec
    if spec is not None and spec.opts.get("firstresult"):
        return subset
    return lambda **kwargs: next(iter(subset(**kwargs)), None)


def call_plugin(pm: pluggy.PluginManager, hook: str, plugin: str, **kwargs: Any) -> Any:
    """Call ``hook`` on the plugin named ``plugin`` alone (see :func:`plugin_caller`); returns
    its answer (``None`` when it declines)."""
    return plugin_caller(pm, hook, plugin)(**kwargs)


class Hooks:
    """One method per hook; the engine and the builder never touch ``pm.hook`` directly."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        trace: bool = False,
        fs_types: Mapping[str, FilesystemType] | None = None,
    ) -> None:
        self.pm = pm
        self.trace = trace
        #: the filesystem types this plugin set's plugins registered, by name (the builder and
        #: verification look here first, then among the installed types)
        self.fs_types: dict[str, FilesystemType] = dict(fs_types or {})
        self.wants_page_events = bool(pm.hook.hotremove_on_page_migrated.get_hookimpls())
        self.wants_writeback_events = bool(pm.hook.hotremove_on_writeback.get_hookimpls())
        #: (plugin, its hotremove_migrate_strategy alone) in call order, made on first use
        self._strategy_callers: list[tuple[str, Callable[..., Any]]] | None = None

    def migrate_strategy(
        self, mapping: AddressSpace, policy: str, kernel: Kernel | None = None
    ) -> tuple[MigrateStrategy, str]:
        """The strategy for ``mapping`` in ``kernel`` (default: the newest modelled) and the
        name of the plugin that gave it."""
        if kernel is None:
            kernel = get_kernel(DEFAULT_KERNEL)
        hook = "hotremove_migrate_strategy"
        if self._strategy_callers is None:
            self._strategy_callers = [
                (plugin, plugin_caller(self.pm, hook, plugin))
                for plugin in call_order(self.pm, hook)
            ]
        for plugin, caller in self._strategy_callers:
            result = caller(mapping=mapping, policy=policy, kernel=kernel)
            if self.trace:
                log.debug(
                    "hook_called",
                    hook=hook,
                    plugin=plugin,
                    a_ops=mapping.a_ops.name,
                    result=getattr(result, "name", None),
                )
            if result is None:
                continue
            if not isinstance(result, MigrateStrategy):
                raise PluginError(
                    f"plugin {plugin!r} returned {type(result).__name__} from "
                    "hotremove_migrate_strategy (expected a MigrateStrategy or None)"
                )
            return result, plugin
        raise PluginError(
            f"no plugin migrates {mapping.a_ops.name} pages under policy {policy!r} "
            "(is hotremove-generic-writeback installed?)"
        )

    def mount(self, machine: Machine, sb: SuperBlock) -> None:
        self.pm.hook.hotremove_mount(machine=machine, sb=sb)

    def background_work(self, machine: Machine, reason: str) -> None:
        self.pm.hook.hotremove_background_work(machine=machine, reason=reason)

    def on_page_migrated(
        self, mapping: AddressSpace | None, old_pfn: int, new_pfn: int, strategy: str
    ) -> None:
        self.pm.hook.hotremove_on_page_migrated(
            mapping=mapping, old_pfn=old_pfn, new_pfn=new_pfn, strategy=strategy
        )

    def on_writeback(self, mapping: AddressSpace, pfn: int, requests: int) -> None:
        self.pm.hook.hotremove_on_writeback(mapping=mapping, pfn=pfn, requests=requests)

    def on_pass_finished(
        self, pass_no: int, mode: MigrateMode, migrated: int, remaining: int
    ) -> None:
        self.pm.hook.hotremove_on_pass_finished(
            pass_no=pass_no, mode=mode, migrated=migrated, remaining=remaining
        )
