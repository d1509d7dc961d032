"""The ``hotremove`` command line (console script ``hotremove = hotremove.cli:main``).

* ``commands`` — the click group ``cli`` (commands in their own modules load on first use),
  ``plugins``, ``scenario``, and the entry point (``main``, ``run_cli``);
* ``run`` — ``demo`` and ``run``; ``compare``; ``bench``; ``explore``; ``sweep``;
  ``snapshot`` (``snapshot`` and ``plan``); ``new_plugin``; ``kernel``
  (real kernels under QEMU); ``kernels`` (the modelled versions, and the per-kernel summary
  ``compare --kernel`` and ``demo`` print);
* what the commands share: ``base`` (the program name, the click classes and the one error
  path), ``settings`` (the shared options, ``begin`` — the one place logging is configured —,
  the run options and the one ``--strategy`` check), ``output`` (the console factory, the pipe
  width, ``emit_json``), ``display`` (a scenario's facts, progress bars) and ``execute``
  (running one scenario: plugins, Ctrl-C back-off, the failure line).

Durations and sizes are formatted by :mod:`hotremove.units`.
"""

from __future__ import annotations

from hotremove.cli.commands import cli, main, ratio, run_cli

__all__ = ["cli", "main", "ratio", "run_cli"]
