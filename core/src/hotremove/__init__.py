"""hotremove: simulate Linux memory hot-removal and cost page-migration strategies."""

from __future__ import annotations

import pluggy

__version__ = "0.2.0"

#: Marker for plugin hook implementations: ``@hotremove.hookimpl``.
hookimpl = pluggy.HookimplMarker("hotremove")

__all__ = ["__version__", "hookimpl"]
