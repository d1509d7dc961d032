"""Shared set-up of the real-kernel tests.

Tests marked ``realkernel`` boot Debian's kernels under QEMU (about a minute each under TCG),
so they are opt-in: they run with ``pytest -m realkernel`` (or ``HOTREMOVE_REALKERNEL=1``) and
are skipped otherwise, keeping a plain ``pytest`` fast. Without qemu-system-x86_64 or busybox
they are skipped on a developer's machine but fail in CI (``CI=true``), where the tools must be
installed.
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realkernel: boots a real Linux kernel under QEMU (slow; needs qemu, busybox)"
    )


def _selected(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("markexpr", "") or "")
    return "realkernel" in markexpr or os.environ.get("HOTREMOVE_REALKERNEL") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if not _selected(config):
        reason = "real-kernel test: run with pytest -m realkernel"
    elif os.environ.get("CI") != "true":
        missing = [t for t in ("qemu-system-x86_64", "busybox") if shutil.which(t) is None]
        if missing:
            reason = f"{', '.join(missing)} not installed"
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("realkernel") is not None:
            item.add_marker(skip)
