"""The ``hotremove`` command line (console script ``hotremove = hotremove.cli:main``).

``commands`` holds the click group and the core commands; ``settings``, ``display`` and
``execute`` what they share; commands that live in their own modules (``cli_bench``,
``cli_sweep``, ``cli_snapshot``, ``cli_explore``, ``newplugin``) load on first use.
"""

from __future__ import annotations

from hotremove.cli.commands import cli, main, ratio, run_cli

__all__ = ["cli", "main", "ratio", "run_cli"]
