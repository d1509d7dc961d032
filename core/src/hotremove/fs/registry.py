"""The filesystem types plugins register, collected and looked up by name.

Two registries. A plugin manager collects the types of the plugins it loaded
(:func:`collect_types`, kept on ``PluginSet.fs_types`` and ``Hooks.fs_types``). Places that
have no plugin manager — scenario validation — ask :func:`installed_types`: the types of
every installed plugin, loaded once per process whatever ``HOTREMOVE_PLUGINS`` selects. A
type is the filesystem itself (its images, tables, mount), so a run that leaves a plugin's
*strategies* out (``HOTREMOVE_PLUGINS=myext4,...``, a conformance suite loading one plugin)
still builds its images: :func:`resolve` looks in the plugin set first, then among the
installed types. Types of plugins that are not installed (a test's plugin objects) are made
known to validation with :func:`using`.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from importlib.metadata import entry_points

import pluggy
import structlog

from hotremove import hookspecs
from hotremove.errors import ScenarioError
from hotremove.fs.fstype import FilesystemType
from hotremove.hooks import call_plugin

log = structlog.get_logger("hotremove.fs.registry")

#: what a filesystem type may be called (``filesystem.type`` in a scenario)
TYPE_NAME = re.compile(r"[a-z0-9_]{1,32}")
HOOK = "hotremove_register_filesystem_types"

#: types made known for a while (:func:`using`), beside the installed ones
_extra: ContextVar[Mapping[str, FilesystemType] | None] = ContextVar("fs_types", default=None)


def collect_types(
    pm: pluggy.PluginManager, on_error: Callable[[str, str], None] | None = None
) -> dict[str, tuple[FilesystemType, str]]:
    """Call ``hotremove_register_filesystem_types`` plugin by plugin (load order): each
    registered type is checked (a :class:`FilesystemType` with a valid name no other plugin
    registered first) and attributed. A plugin whose registration fails keeps the types it
    registered before the failure; ``on_error(plugin, message)`` hears of the failure."""
    types: dict[str, tuple[FilesystemType, str]] = {}
    for impl in getattr(pm.hook, HOOK).get_hookimpls():
        plugin = impl.plugin_name

        def register(fs_type: FilesystemType, *, _plugin: str = plugin) -> None:
            if not isinstance(fs_type, FilesystemType):
                raise TypeError(f"expected a FilesystemType, got {type(fs_type).__name__}")
            type_name = getattr(fs_type, "name", None)
            if not isinstance(type_name, str) or not TYPE_NAME.fullmatch(type_name):
                raise ValueError(f"filesystem type name {type_name!r} is not [a-z0-9_]{{1,32}}")
            owner = types.get(type_name)
            if owner is not None and owner[1] != _plugin:
                raise ValueError(f"type {type_name!r} is already registered by {owner[1]!r}")
            types[type_name] = (fs_type, _plugin)

        try:
            call_plugin(pm, HOOK, plugin, register=register)
        except Exception as exc:
            message = f"{HOOK}: {type(exc).__name__}: {exc}"
            log.warning("plugin_register_failed", plugin=plugin, error=message)
            if on_error is not None:
                on_error(plugin, message)
    return types


@functools.cache
def _installed() -> dict[str, tuple[FilesystemType, str]]:
    pm = pluggy.PluginManager("hotremove")
    pm.add_hookspecs(hookspecs)
    for ep in sorted(entry_points(group="hotremove"), key=lambda ep: ep.name):
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # `hotremove plugins` reports it; here the type is absent
            log.debug("plugin_skipped", plugin=ep.name, error=f"{type(exc).__name__}: {exc}")
    return collect_types(pm)


def installed_types() -> dict[str, FilesystemType]:
    """Every type the installed plugins register (entry points, loaded once per process),
    and the types made known with :func:`using`."""
    installed = {name: fs_type for name, (fs_type, _plugin) in _installed().items()}
    return {**installed, **(_extra.get() or {})}


def installed_owner(name: str) -> str | None:
    """The installed plugin (entry-point name) that registers the type ``name``."""
    owner = _installed().get(name)
    return owner[1] if owner is not None else None


def forget_installed() -> None:
    """Load the installed types again at the next question (tests that install plugins)."""
    _installed.cache_clear()


@contextlib.contextmanager
def using(types: Mapping[str, FilesystemType | tuple[FilesystemType, str]]) -> Iterator[None]:
    """Make ``types`` (``PluginSet.fs_types``, or name → type) known to validation in this
    block, beside the installed ones — for plugins that are not installed."""
    plain = {n: t[0] if isinstance(t, tuple) else t for n, t in types.items()}
    token = _extra.set({**(_extra.get() or {}), **plain})
    try:
        yield
    finally:
        _extra.reset(token)


def known(name: str, *, key: str = "type") -> FilesystemType:
    """The installed type ``name``; else a one-line ``ValueError("type: …")`` naming the
    installed ones (scenario validation prefixes the table)."""
    types = installed_types()
    fs_type = types.get(name)
    if fs_type is None:
        listed = ", ".join(sorted(types)) or "none: install a filesystem plugin"
        raise ValueError(f"{key}: unknown filesystem type {name!r} (installed: {listed})")
    return fs_type


def resolve(name: str, preferred: Mapping[str, FilesystemType] | None = None) -> FilesystemType:
    """The type ``name`` from ``preferred`` (a plugin set's), else an installed one; unknown
    is a :class:`~hotremove.errors.ScenarioError` naming the types there are."""
    if preferred and name in preferred:
        return preferred[name]
    try:
        return known(name)
    except ValueError as exc:
        raise ScenarioError(f"filesystem.{exc}") from None


__all__ = [
    "TYPE_NAME",
    "collect_types",
    "forget_installed",
    "installed_owner",
    "installed_types",
    "known",
    "resolve",
    "using",
]
