"""examples/hotremove-minix, a third-party plugin package, installed into a fresh virtualenv like
a package from PyPI: it registers through its entry point, brings a filesystem type hotremove
does not model itself (minix v3 images: made, mapped, read and checked on real images) and its
table (``minix_aops``), answers per kernel, and passes hotremove's conformance suite."""

from __future__ import annotations

import json
import shutil
import tomllib
from importlib.util import find_spec
from pathlib import Path

import pytest

from hotremove.plugins import load_plugins
from hotremove.testing.isolated import IsolatedEnv, create_env, find_uv

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hotremove-minix"

ANSWERS = """
from hotremove.kernels import KERNELS
from hotremove.model.address_space import AddressSpaceOps, probe_mapping
from hotremove.plugins import load_plugins

hooks = load_plugins().hooks
minix = probe_mapping(AddressSpaceOps("minix_aops", "minix"))
for version, kernel in KERNELS.items():
    strategy, plugin = hooks.migrate_strategy(minix, "auto", kernel)
    print(version, strategy.name, plugin)
"""


def workspace_packages() -> list[Path]:
    """The core and every built-in plugin, as directories to install from."""
    return [ROOT / "core", *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]


@pytest.fixture(scope="module")
def minix_env(tmp_path_factory: pytest.TempPathFactory) -> IsolatedEnv:
    if find_uv() is None:
        pytest.skip("uv is not installed: cannot create an isolated environment")
    root = tmp_path_factory.mktemp("minix-example") / "venv"
    return create_env(root, *workspace_packages(), EXAMPLE, f"pytest=={pytest.__version__}")


def test_the_example_is_not_part_of_the_workspace():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    assert not any(EXAMPLE.relative_to(ROOT).match(pattern) for pattern in members)
    assert "hotremove-minix" not in root["project"]["dependencies"]
    assert find_spec("hotremove_minix") is None, "must not be installed by default"
    assert "minix" not in {p.name for p in load_plugins().report}


def test_plugins_command_lists_the_installed_package(minix_env):
    listed = json.loads(minix_env.run("hotremove", "plugins", "--json").stdout)

    by_name = {p["name"]: p for p in listed["plugins"]}
    minix = by_name["minix"]
    assert (minix["dist"], minix["version"], minix["error"]) == ("hotremove-minix", "0.2.0", None)
    assert minix["aops"] == ["minix_aops"] and minix["fs_types"] == ["minix"]
    assert minix["types"] == ["minix"]
    assert minix["hooks"] == [
        "hotremove_migrate_strategy",
        "hotremove_register_filesystem_types",
        "hotremove_register_filesystems",
    ]
    assert all(p["error"] is None for p in listed["plugins"]), listed
    assert {"ext2", "ext3", "ext4", "generic_writeback"} <= set(by_name)


def test_minix_pages_get_each_kernels_migrate_folio(minix_env):
    """kernel-reference §5.1: minix had no migrate_folio in 5.10 and 6.1 (the fallback writes
    the page out; 5.10 calls it fallback_migrate_page), buffer_migrate_folio in 6.12 and 7.2;
    the seed wrote back everything but ext2/ext3."""
    out = minix_env.run("python", "-c", ANSWERS).stdout.split("\n")

    assert [line.split() for line in out if line] == [
        ["2004", "fallback_migrate_folio", "generic_writeback"],
        ["5.10", "fallback_migrate_page", "generic_writeback"],
        ["6.1", "fallback_migrate_folio", "generic_writeback"],
        ["6.12", "buffer_migrate_folio", "minix"],
        ["7.2", "buffer_migrate_folio", "minix"],
    ]


def test_the_example_passes_its_tests_and_the_conformance_suite(minix_env, tmp_path):
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")

    proc = minix_env.run(
        "python", "-m", "pytest", "tests", "-v", "-ra", "-p", "no:cacheprovider",
        cwd=tmp_path, check=False,
    )  # fmt: skip

    out = proc.stdout
    assert proc.returncode == 0, out[-6000:]
    for suite in ("TestMinixConformance", "TestMinixConformance61", "TestMinixConformance2004"):
        for test in (
            "test_declaration_is_valid",
            "test_entry_point_loads",
            "test_implements_only_known_hooks",
            "test_claims_what_it_declares",
            "test_answers_for_its_own_mappings",
            "test_returns_none_for_mappings_not_its_own",
        ):
            assert f"{suite}::{test} PASSED" in out, out[-6000:]
    assert "test_a_minix_page_gets_its_kernels_migrate_folio[6.12-" in out
    # the filesystem type works on real images in a user's environment: nothing skipped there
    for test in (
        "test_map_files_agrees_with_the_bytes_on_the_image",
        "test_read_files_gives_every_file_back",
        "test_fsck_finds_the_image_clean",
        "test_a_damaged_data_byte_reads_back_damaged",
        "test_validate_and_mkfs_agree_on_what_fits",
        "test_the_type_is_registered_by_this_plugin",
    ):
        assert f"test_minix_images.py::{test} PASSED" in out or (
            f"test_minix_per_kernel.py::{test} PASSED" in out
        ), out[-6000:]
    # the core builds minix images through the installed type: the suite's engine runs go
    # through real minix images, mounted, migrated, checked by fsck.minix and read back ...
    for mode in ("async", "sync_light", "sync"):
        for test in ("test_migration_keeps_data", "test_buffers_keep_state_and_block_mapping"):
            assert f"TestMinixConformance::{test}[minix_aops-{mode}] PASSED" in out, out[-6000:]
    # ... and a claim the suite cannot exercise is named, never silently dropped
    assert "no migrate_folio in kernel 6.1 (minix_aops has no migrate_folio before 6.8)" in out
