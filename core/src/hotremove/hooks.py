"""Typed facade over ``pm.hook``: the only way the core calls plugins.

Besides types, the facade attributes answers to plugins: ``migrate_strategy`` walks the hook
implementations itself, in pluggy's own call order, so the report can say which plugin serves
which a_ops and a plugin that returns the wrong type is named in the error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy
import structlog

from hotremove.errors import HotremoveError
from hotremove.migrate import MigrateStrategy

if TYPE_CHECKING:
    from hotremove.model.address_space import AddressSpace, SuperBlock
    from hotremove.model.machine import Machine
    from hotremove.model.migrate_mode import MigrateMode

log = structlog.get_logger("hotremove.hooks")


class PluginError(HotremoveError):
    """A plugin broke the hook contract at run time (the message names the plugin)."""


def _call_order(caller: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """Implementations in the order pluggy calls them (tryfirst … trylast), wrappers excluded."""
    return [
        impl
        for impl in reversed(caller.get_hookimpls())
        if not (impl.hookwrapper or getattr(impl, "wrapper", False))
    ]


class Hooks:
    """One method per hook; the engine and the builder never touch ``pm.hook`` directly."""

    def __init__(self, pm: pluggy.PluginManager, *, trace: bool = False) -> None:
        self.pm = pm
        self.trace = trace
        self.wants_page_events = bool(pm.hook.hotremove_on_page_migrated.get_hookimpls())
        self.wants_writeback_events = bool(pm.hook.hotremove_on_writeback.get_hookimpls())

    def migrate_strategy(self, mapping: AddressSpace, policy: str) -> tuple[MigrateStrategy, str]:
        """The strategy for ``mapping`` and the name of the plugin that gave it."""
        caller = self.pm.hook.hotremove_migrate_strategy
        for impl in _call_order(caller):
            args = {"mapping": mapping, "policy": policy}
            result = impl.function(*[args[name] for name in impl.argnames])
            if self.trace:
                log.debug(
                    "hook_called",
                    hook="hotremove_migrate_strategy",
                    plugin=impl.plugin_name,
                    a_ops=mapping.a_ops.name,
                    result=getattr(result, "name", None),
                )
            if result is None:
                continue
            if not isinstance(result, MigrateStrategy):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {type(result).__name__} from "
                    "hotremove_migrate_strategy (expected a MigrateStrategy or None)"
                )
            return result, impl.plugin_name
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
