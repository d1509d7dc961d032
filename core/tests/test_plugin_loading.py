"""Plugin loading through real entry points: failures are reported, the rest keeps working."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hotremove import hookimpl
from hotremove.errors import ScenarioError
from hotremove.fs.registry import forget_installed, installed_types
from hotremove.hooks import PluginError
from hotremove.plugins import load_plugins
from hotremove.testing import small_scenario


def install_fake_distribution(root: Path, dist: str, entry: str, module: str, code: str) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on sys.path."""
    info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[hotremove]\n{entry} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    forget_installed()  # the registry of installed types is loaded once per process
    yield root
    for name in [m for m in sys.modules if m.startswith("hr_test_")]:
        del sys.modules[name]
    forget_installed()


def by_name(plugins):
    return {p.name: p for p in plugins.report}


def test_plugin_that_fails_to_import_is_reported_and_others_work(
    site, hotremove_build, hotremove_verify
):
    install_fake_distribution(
        site, "hotremove-broken", "broken", "hr_test_broken", "raise ImportError('needs libfoo')\n"
    )
    plugins = load_plugins()
    report = by_name(plugins)
    assert report["broken"].error == "ImportError: needs libfoo"
    assert report["broken"].dist == "hotremove-broken" and report["broken"].version == "0.3"
    assert [p.name for p in plugins.errors] == ["broken"]
    assert {"ext2", "ext3", "generic_writeback"} <= {n for n, p in report.items() if not p.error}

    from hotremove.mm.memory_block import offline

    built = hotremove_build(small_scenario({"type": "ext2"}), plugins=plugins)
    assert offline(built.machine, plugins.hooks, [1]).offlined
    assert hotremove_verify(built, plugins).ok


def test_misspelt_hook_is_a_validation_error_not_silence(site):
    install_fake_distribution(
        site,
        "hotremove-typo",
        "typo",
        "hr_test_typo",
        """
        from hotremove import hookimpl

        @hookimpl
        def hotremove_migrate_stratgy(mapping, policy):
            return None
    """,
    )
    report = by_name(load_plugins())
    assert "hotremove_migrate_stratgy" in report["typo"].error
    assert report["typo"].error.startswith("PluginValidationError")
    assert report["ext2"].error is None


def test_claiming_an_aops_twice_is_reported_by_name(site):
    install_fake_distribution(
        site,
        "hotremove-thief",
        "zz_thief",
        "hr_test_thief",
        """
        from hotremove import hookimpl

        @hookimpl
        def hotremove_register_filesystems(register):
            register("ext2", aops=["ext2_aops"])
    """,
    )
    plugins = load_plugins()
    assert "already claimed by plugin 'ext2'" in by_name(plugins)["zz_thief"].error
    assert plugins.aops_owner["ext2_aops"] == "ext2"


def test_wrong_return_type_is_caught_at_load_and_named(site, hotremove_build):
    install_fake_distribution(
        site,
        "hotremove-wrong",
        "wrong",
        "hr_test_wrong",
        """
        from hotremove import hookimpl

        @hookimpl(tryfirst=True)
        def hotremove_migrate_strategy(mapping, policy):
            return "buffer_migrate_folio"
    """,
    )
    plugins = load_plugins()
    error = by_name(plugins)["wrong"].error
    assert error.startswith("hotremove_migrate_strategy returned str"), error
    assert plugins.pm.get_plugin("wrong") is None, "left out, the others keep working"
    built = hotremove_build(small_scenario({"type": "ext2"}), plugins=plugins)
    assert plugins.hooks.migrate_strategy(built.machine.mappings[0], "auto")[1] == "ext2"


def test_wrong_return_type_at_run_time_names_the_plugin(hotremove_build):
    class Sneaky:  # answers None to the load-time probe, garbage later
        @hookimpl(tryfirst=True)
        def hotremove_migrate_strategy(self, mapping, policy):
            return None if mapping.host.path == "probe" else 42

    plugins = load_plugins(extra=[("sneaky", Sneaky())])
    built = hotremove_build(small_scenario({"type": "ext2"}), plugins=plugins)
    with pytest.raises(PluginError, match="plugin 'sneaky' returned int"):
        plugins.hooks.migrate_strategy(built.machine.mappings[0], "auto")


def test_environment_switches(monkeypatch):
    monkeypatch.setenv("HOTREMOVE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert load_plugins().report == []
    monkeypatch.delenv("HOTREMOVE_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("HOTREMOVE_PLUGINS", "ext2,generic_writeback")
    assert [p.name for p in load_plugins().report] == ["ext2", "generic_writeback"]


def test_entry_points_load_in_sorted_order():
    names = [p.name for p in load_plugins().report]
    assert names == sorted(names)


FAKE_TYPE = """
    from hotremove import hookimpl
    from hotremove.fs.fstype import CheckVerdict, FilesystemType


    class Toyfs(FilesystemType):
        name = "toyfs"

        def make_image(self, image, cfg, files): raise NotImplementedError
        def map_files(self, image, cfg, paths): raise NotImplementedError
        def check(self, image, cfg): return CheckVerdict(True, "clean")
        def read_files(self, image, cfg, paths): raise NotImplementedError
        def aops(self, cfg, kernel): raise NotImplementedError


    @hookimpl
    def hotremove_register_filesystem_types(register):
        register(Toyfs())
        {extra}
"""


def test_filesystem_types_are_registered_attributed_and_clashes_reported(site):
    """hotremove_register_filesystem_types: a registered type is in the registry with its
    plugin; the same name from a later plugin, a non-type and a bad name are reported."""
    install_fake_distribution(
        site, "hotremove-toy", "toy", "hr_test_toy", FAKE_TYPE.format(extra="")
    )
    install_fake_distribution(
        site,
        "hotremove-toy2",
        "toy2",
        "hr_test_toy2",
        FAKE_TYPE.format(extra="register(object())"),
    )
    install_fake_distribution(
        site,
        "hotremove-toy3",
        "toy3",
        "hr_test_toy3",
        FAKE_TYPE.replace('name = "toyfs"', 'name = "Toy FS"').format(extra=""),
    )
    plugins = load_plugins()
    report = by_name(plugins)
    fs_type, owner = plugins.fs_types["toyfs"]
    assert owner == "toy" and type(fs_type).__name__ == "Toyfs"
    assert report["toy"].types == ["toyfs"] and report["toy"].error is None
    assert report["toy"].as_dict()["types"] == ["toyfs"]
    assert "already registered by 'toy'" in report["toy2"].error
    assert "'Toy FS'" in report["toy3"].error and "Toy FS" not in plugins.fs_types
    assert report["ext2"].error is None


TOOLLESS_TYPE = """
    from hotremove import hookimpl
    from hotremove.fs.fstype import FilesystemType


    class Toolless(FilesystemType):
        name = "toolless"
        tools = {"hr-no-such-mkfs": "hr-no-such-package"}

        def make_image(self, image, cfg, files): raise AssertionError("never built")
        def map_files(self, image, cfg, paths): raise AssertionError("never built")
        def check(self, image, cfg): raise AssertionError("never built")
        def read_files(self, image, cfg, paths): raise AssertionError("never built")
        def aops(self, cfg, kernel): raise AssertionError("never built")


    @hookimpl
    def hotremove_register_filesystem_types(register):
        register(Toolless())
"""


def test_scenarios_accept_the_installed_types_and_name_them_for_an_unknown_one(site):
    """filesystem.type is any type an installed plugin registers — whatever HOTREMOVE_PLUGINS
    selects (types are the filesystems; the switch selects hooks) — with its block size by
    default; an unknown type is one line naming the installed ones."""
    from hotremove.scenario import loads

    install_fake_distribution(
        site, "hotremove-toy", "toy", "hr_test_toy", FAKE_TYPE.format(extra="")
    )
    table = '[[filesystem]]\nname = "a"\n'
    cfg = loads(table + 'type = "toyfs"').filesystem[0]
    assert (cfg.type, cfg.block_size) == ("toyfs", 4096), "the type's default block size"
    assert {"ext2", "ext3", "ext4", "toyfs"} <= set(installed_types())
    with pytest.raises(ScenarioError) as unknown:
        loads(table + 'type = "nosuchfs"')
    listed = ", ".join(sorted(installed_types()))
    assert "toyfs" in listed
    assert str(unknown.value) == (
        f"filesystem[0].type: unknown filesystem type 'nosuchfs' (installed: {listed})"
    )
    with pytest.raises(ScenarioError, match=r"^filesystem\[0\]\.options: toyfs has no option"):
        loads(table + 'type = "toyfs"\noptions = ["nobh"]')


def test_a_type_whose_tools_are_missing_is_one_line_when_run_not_when_checked(
    site, tmp_path, capsys
):
    from hotremove.cli import run_cli

    install_fake_distribution(
        site, "hotremove-toolless", "toolless", "hr_test_toolless", TOOLLESS_TYPE
    )
    scenario = tmp_path / "toolless.toml"
    scenario.write_text(
        '[memory]\nsize = "32MiB"\nblock_size = "8MiB"\n'
        '[[filesystem]]\nname = "a"\ntype = "toolless"\nsize = "8MiB"\nfiles = 4\n'
    )
    assert run_cli(["scenario", "check", str(scenario)]) == 0, "checked on any machine"
    capsys.readouterr()

    assert run_cli(["run", str(scenario), "--keep-images", str(tmp_path / "img")]) == 2

    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "toolless: hr-no-such-mkfs not found (apt-get install hr-no-such-package)"
    ), err
    assert "\n" not in err
