"""Shared set-up of the real-kernel tests.

Tests marked ``realkernel`` boot Debian's kernels under QEMU (minutes under TCG): select them
with ``pytest -m realkernel``, leave them out with ``-m 'not realkernel'``. Without
qemu-system-x86_64 they are skipped on a developer's machine but fail in CI (``CI=true``), where
the tools must be installed.
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realkernel: boots a real Linux kernel under QEMU (slow; needs qemu, busybox)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") == "true":
        return
    missing = [t for t in ("qemu-system-x86_64", "busybox") if shutil.which(t) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"{', '.join(missing)} not installed")
    for item in items:
        if "realkernel" in item.keywords:
            item.add_marker(skip)
