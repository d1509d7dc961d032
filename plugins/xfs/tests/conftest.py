"""The xfs type as the core finds it (the installed entry point), and scenario tables for it.

Until the core builds xfs machines (the scenario model still lists ext2/3/4 only), a
``FilesystemConfig`` for xfs is constructed without the core's validation: the type's own
``validate`` is what these tests exercise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hotremove.plugins import load_plugins
from hotremove.scenario import FilesystemConfig


def make_config(**kw: Any) -> FilesystemConfig:
    """A ``[[filesystem]]`` table of type xfs (defaults: 64 MiB, 4 KiB blocks)."""
    table = {
        "name": "x",
        "type": "xfs",
        "block_size": 4096,
        "size": 64 << 20,
        "files": 8,
        "file_size": 64 << 10,
        "options": [],
        **kw,
    }
    return FilesystemConfig.model_construct(**table)


@pytest.fixture(scope="session")
def xfs_config() -> Callable[..., FilesystemConfig]:
    """``xfs_config(**table) -> FilesystemConfig`` (see :func:`make_config`)."""
    return make_config


@pytest.fixture(scope="session")
def xfs() -> Any:
    """The registered ``xfs`` FilesystemType (from hotremove-xfs's entry point)."""
    fs_type, owner = load_plugins().fs_types["xfs"]
    assert owner == "xfs"
    return fs_type
