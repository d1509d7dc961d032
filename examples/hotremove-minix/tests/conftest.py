"""The minix type as hotremove loads it (through the installed entry point), and scenario
tables for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hotremove.fs.fstype import FilesystemType
from hotremove.plugins import load_plugins
from hotremove.scenario import FilesystemConfig

MiB = 1 << 20


@pytest.fixture(scope="session")
def minix_type() -> FilesystemType:
    """The registered type, found the way the core finds it: ``load_plugins().fs_types``."""
    fs_type, plugin = load_plugins().fs_types["minix"]
    assert plugin == "minix"
    return fs_type


@pytest.fixture(scope="session")
def minix_config() -> Callable[..., FilesystemConfig]:
    """``[[filesystem]]`` tables of type minix. Built with ``model_construct`` because this
    hotremove's scenario schema may not know plugin types yet; the type's ``validate`` is the
    check that counts here."""

    def make(**fields: Any) -> FilesystemConfig:
        table: dict[str, Any] = {
            "name": "mx",
            "type": "minix",
            "block_size": 1024,
            "size": 8 * MiB,
            "files": 8,
            "file_size": 64 << 10,
            "options": [],
        }
        table.update(fields)
        return FilesystemConfig.model_construct(**table)

    return make
