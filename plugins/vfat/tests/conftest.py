"""The vfat type as the core finds it (the installed entry point), and scenario tables for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hotremove.fs.fstype import FilesystemType
from hotremove.plugins import load_plugins
from hotremove.scenario import FilesystemConfig


@pytest.fixture(scope="session")
def vfat() -> FilesystemType:
    """The ``vfat`` type registered through hotremove-vfat's entry point."""
    fs_type, owner = load_plugins().fs_types["vfat"]
    assert owner == "vfat"
    return fs_type


@pytest.fixture
def fat_config() -> Callable[..., FilesystemConfig]:
    """A ``[[filesystem]]`` table of type vfat. Built unvalidated (``model_construct``): the
    core's FilesystemConfig accepts only ext types until the core is wired to filesystem-type
    plugins; :meth:`VfatType.validate` — the check under test here — is what judges it."""

    def make(**fields: Any) -> FilesystemConfig:
        table = {
            "name": "fat",
            "type": "vfat",
            "block_size": 512,
            "size": 4 << 20,
            "files": 8,
            "file_size": 16 << 10,
            "options": [],
        }
        return FilesystemConfig.model_construct(**{**table, **fields})

    return make
