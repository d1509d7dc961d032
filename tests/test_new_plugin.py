"""``hotremove new-plugin``: the package it writes is complete and lint clean, follows the core's
own a_ops tables, and — installed into a fresh virtualenv — registers and passes its generated
tests (hotremove's conformance suite among them)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotremove import __version__
from hotremove.cli.new_plugin import new_plugin_command, tables_of
from hotremove.testing import strict_plugins
from hotremove.testing.isolated import IsolatedEnv, create_env, find_uv

ROOT = Path(__file__).resolve().parents[1]
FILES = [
    "README.md",
    "pyproject.toml",
    "src/hotremove_myext4/__init__.py",
    "src/hotremove_myext4/plugin.py",
    "tests/test_myext4_conformance.py",
    "tests/test_myext4_migration.py",
]


def generate(tmp_path: Path, *args: str, name: str = "myext4"):
    return CliRunner().invoke(new_plugin_command, [name, "--dir", str(tmp_path / name), *args])


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_the_cli_runs_the_command():
    import click

    from hotremove.cli import cli

    assert cli.get_command(click.Context(cli), "new-plugin") is new_plugin_command


def test_writes_a_ready_package(tmp_path):
    result = generate(tmp_path)

    assert result.exit_code == 0, result.output
    pkg = tmp_path / "myext4"
    assert sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()) == FILES
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "hotremove-myext4"
    assert meta["project"]["entry-points"]["hotremove"] == {"myext4": "hotremove_myext4.plugin"}
    minor = ".".join(__version__.split(".")[:2])
    # the distribution that registers the ext4 type: the package's images are ext4's
    assert meta["project"]["dependencies"] == [f"hotremove>={minor}", "hotremove-ext4"]
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/hotremove_myext4"
    ]
    assert "pytest myext4/tests" in result.output.replace(str(tmp_path) + "/", "")
    # the plugin module, as written, is a valid plugin claiming ext4's buffered tables
    plugin = load_module(pkg / "src/hotremove_myext4/plugin.py", "hr_generated_plugin")
    plugins = strict_plugins(("myext4", plugin), autoload=False)
    assert plugins.aops_owner == {"ext4_aops": "myext4", "ext4_da_aops": "myext4"}
    # ... and its conformance module declares exactly that
    tests = load_module(pkg / "tests/test_myext4_conformance.py", "hr_generated_tests")
    suite = tests.TestMyext4Conformance()
    assert (suite.plugin, suite.dist) == ("myext4", "hotremove-myext4")
    assert suite.filesystems == {"ext4": {"ext4_aops": ("nodelalloc",), "ext4_da_aops": ()}}
    suite.check_claims(plugins)


def test_tables_and_strategies_follow_the_core(tmp_path):
    ext3 = tables_of("ext3")
    assert {name: (t.strategy, t.options) for name, t in ext3.items()} == {
        "ext3_journalled_aops": ("BUFFER_MIGRATE_FOLIO_NOREFS", ("data=journal",)),
        "ext3_ordered_aops": ("BUFFER_MIGRATE_FOLIO", ()),
        "ext3_writeback_aops": ("BUFFER_MIGRATE_FOLIO", ("data=writeback",)),
    }
    assert tables_of("ext2")["ext2_nobh_aops"].strategy == "MIGRATE_FOLIO"

    result = generate(tmp_path, "--fs-type", "ext3", "--aops", "ext3_journalled_aops", name="j3")

    assert result.exit_code == 0, result.output
    plugin = (tmp_path / "j3/src/hotremove_j3/plugin.py").read_text()
    assert '"ext3_journalled_aops": BUFFER_MIGRATE_FOLIO_NOREFS,' in plugin
    assert "ext3_ordered_aops" not in plugin
    conformance = (tmp_path / "j3/tests/test_j3_conformance.py").read_text()
    assert '"ext3_journalled_aops": ("data=journal",),' in conformance
    assert "ext3_journalled_aops is already claimed by the installed plugin 'ext3'" in (
        result.stderr
    )


def test_generated_code_is_lint_clean(tmp_path):
    pytest.importorskip("ruff", reason="ruff is a dev dependency of the workspace")
    for args, name in (((), "a"), (("--fs-type", "ext2"), "b"), (("--fs-type", "ext3"), "c")):
        assert generate(tmp_path, *args, name=name).exit_code == 0
    ruff = [sys.executable, "-m", "ruff"]
    rules = ["--isolated", "--line-length", "100"]
    lint = subprocess.run(
        [*ruff, "check", *rules, "--select", "E,F,W,I,UP,B,SIM,RUF", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [*ruff, "format", *rules, "--check", str(tmp_path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad-Name"], "Invalid value for NAME: 'Bad-Name': use lowercase letters"),
        (["ext2"], "an installed plugin is already called 'ext2'"),
        (["x", "--aops", "ext2_aops"], "ext2_aops: not an ext4 table (known: ext4_aops, "),
        (["x", "--fs-type", "nosuchfs"], "Invalid value for '--fs-type': 'nosuchfs' is not one"),
    ],
)
def test_refuses_bad_input(args, message, tmp_path):
    result = CliRunner().invoke(new_plugin_command, [*args, "--dir", str(tmp_path / "pkg")])

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "pkg").exists()


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")

    result = CliRunner().invoke(new_plugin_command, ["x", "--dir", str(tmp_path / "pkg")])

    assert result.exit_code == 2 and "exists and is not empty" in result.output
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["keep.txt"]


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory: pytest.TempPathFactory) -> IsolatedEnv:
    """hotremove, the writeback fallback and the ext4 type's distribution (with its e2fs
    library) only, installed as wheels."""
    if find_uv() is None:
        pytest.skip("uv is not installed: cannot create an isolated environment")
    root = tmp_path_factory.mktemp("new-plugin") / "venv"
    plugins = [ROOT / "plugins" / name for name in ("generic_writeback", "e2fs", "ext4")]
    return create_env(root, ROOT / "core", *plugins, f"pytest=={pytest.__version__}")


def test_generated_package_installs_and_its_tests_pass(plain_env, tmp_path):
    # generated by the installed hotremove, as the guide says: the templates ship in its wheel
    plain_env.run("hotremove", "new-plugin", "myext4", "--dir", "pkg", cwd=tmp_path)
    plain_env.install(tmp_path / "pkg")

    # ext4's own plugin claims the same tables: the new one runs where it is left out
    # (its filesystem type stays available: types come from every installed plugin)
    mine = {"HOTREMOVE_PLUGINS": "myext4,generic_writeback"}
    listed = {
        p["name"]: p
        for p in json.loads(plain_env.run("hotremove", "plugins", "--json", env=mine).stdout)[
            "plugins"
        ]
    }
    assert listed["myext4"]["dist"] == "hotremove-myext4" and listed["myext4"]["error"] is None
    assert listed["myext4"]["aops"] == ["ext4_aops", "ext4_da_aops"]
    assert "ext4" not in listed

    proc = plain_env.run(
        "python", "-m", "pytest", "pkg/tests", "-v", "-ra", "-p", "no:cacheprovider",
        cwd=tmp_path, check=False,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stdout[-6000:]
    out = proc.stdout
    assert "test_myext4_migration.py::test_dirty_pages_move_without_writeback PASSED" in out
    suite = "test_myext4_conformance.py::TestMyext4Conformance::"
    for test in (
        "test_entry_point_loads",
        "test_claims_what_it_declares",
        "test_migration_keeps_data[ext4_da_aops-async]",
        "test_rebinding_strategy_issues_no_writeback[ext4_da_aops-sync]",
        "test_locks_and_refcounts_balance[ext4_da_aops-sync_light]",
    ):
        assert f"{suite}{test} PASSED" in out, out[-6000:]


def test_a_plugin_added_the_documented_way_survives_uv_sync(tmp_path):
    """docs/plugins.md: inside the workspace, `uv add --dev --editable PATH` — the plugin is
    then in the root's dev group, and `uv sync` (which removes whatever the lock does not name)
    keeps it installed."""
    uv = find_uv()
    if uv is None or not (ROOT / ".git").exists():
        pytest.skip("needs uv and a git checkout of the workspace")
    ws = tmp_path / "ws"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(ws)], check=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "UV_", "HOTREMOVE_"))
    }

    def uv_run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [uv, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    uv_run("sync", "--locked", "--quiet")
    uv_run("run", "--quiet", "hotremove", "new-plugin", "myfs", "--dir", "hotremove-myfs")
    uv_run("add", "--quiet", "--dev", "--editable", "./hotremove-myfs")
    uv_run("sync", "--quiet")
    listed = json.loads(uv_run("run", "--quiet", "hotremove", "plugins", "--json").stdout)
    assert "myfs" in {p["name"] for p in listed["plugins"]}
