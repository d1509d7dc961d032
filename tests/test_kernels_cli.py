"""Kernel versions on the command line: ``--kernel`` on run, demo, plan and compare, the
``kernels`` command, the demo's table of every kernel, and the one-line error of an unknown
version (exit 2, before any work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hotremove.kernels import KERNELS, VERSIONS, get_kernel
from hotremove.realmachine.plan import strategy_for
from hotremove.realmachine.synthesize import FsSpec

from .conftest import invoke

DATA = Path(__file__).parent / "data"
UNKNOWN = "hotremove: error: --kernel: unknown kernel '4.19' (modelled: 2004, 5.10, 6.1, 6.12, 7.2)"

#: ext3 data=journal, every page dirty: 6.1 writes the pages out and moves them; 6.12's
#: buffer_migrate_folio_norefs refuses while jbd2 holds their buffers and the offline ends
#: with the signal (remove.timeout, kept short here).
JOURNAL = """\
[memory]
size = "32MiB"
block_size = "8MiB"

[[filesystem]]
name = "mail"
type = "ext3"
block_size = 1024
size = "4MiB"
files = 16
file_size = "32KiB"
options = ["data=journal"]

[workload]
dirty = 1.0

[remove]
blocks = [1]
timeout = 5
"""


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.toml"
    path.write_text(JOURNAL)
    return path


def _json(proc: Any) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- unknown version


@pytest.mark.parametrize(
    "args",
    [
        ["run", "/nonexistent/scenario.toml", "--kernel", "4.19"],
        ["demo", "--kernel", "4.19"],
        ["compare", "/nonexistent/scenario.toml", "--kernel", "6.1,4.19"],
        ["plan", "/nonexistent/snapshot.npz", "--kernel", "4.19"],
    ],
    ids=["run", "demo", "compare", "plan"],
)
def test_unknown_kernel_is_one_line_and_exit_2_before_any_work(args: list[str]) -> None:
    # the scenario / snapshot does not exist: the version is refused before it is read
    proc = invoke(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == UNKNOWN


def test_compare_needs_a_version() -> None:
    proc = invoke("compare", "/nonexistent/scenario.toml", "--kernel", ",")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("hotremove: error: --kernel: name a version")


# --------------------------------------------------------------------------- kernels


def test_kernels_json_lists_every_version_and_the_plugins_answers() -> None:
    proc = invoke("kernels", "--json")
    assert proc.returncode == 0, proc.stderr
    info = _json(proc)
    assert list(info["kernels"]) == list(VERSIONS) == ["2004", "5.10", "6.1", "6.12", "7.2"]
    assert info["default"] == "7.2"
    mounted_by_ext4 = "ext3 images are mounted by ext4 (ext4_da_aops, ext4_journalled_aops)"
    for version, k in info["kernels"].items():
        assert k["title"] == KERNELS[version].title
        # the kernel's own rules, then the filesystem types' (which driver mounts an image)
        extra = [mounted_by_ext4] if version != "2004" else []
        assert k["rules"] == [*(rule.text for rule in KERNELS[version].rules), *extra]
        assert k["drivers"] == ({"ext3": "ext4"} if extra else {})
        assert len(k["rule_sources"]) == len(k["rules"]) and all(k["rule_sources"])
        # every answer of the built-in plugins says where the kernel sets it, since when
        assert all(a["source"] for a in k["a_ops"].values()), version
    journalled = {v: k["a_ops"]["ext4_journalled_aops"] for v, k in info["kernels"].items()}
    assert journalled["6.12"]["strategy"] == "buffer_migrate_folio_norefs"
    assert journalled["6.12"]["plugin"] == "ext4"
    assert journalled["6.1"]["strategy"] == "fallback_migrate_folio"
    assert journalled["7.2"]["strategy"] == "buffer_migrate_folio_norefs"
    assert journalled["7.2"]["source"] == "fs/ext4/inode.c, v6.3"
    # 5.10 is the migratepage era: the same functions under their *_page names
    assert journalled["5.10"]["strategy"] == "fallback_migrate_page"
    assert info["kernels"]["5.10"]["a_ops"]["ext4_da_aops"]["strategy"] == "buffer_migrate_page"
    # 7.2's fallback refuses dirty folios (7ee3647243e5, v6.16): cited as such
    assert "7ee3647243e5" in info["kernels"]["7.2"]["a_ops"]["ext3_journalled_aops"]["source"]
    # a plugin answering per version shows: ext2 rebinds in the seed, moves buffers in 6.x
    ext2 = {v: k["a_ops"]["ext2_aops"]["strategy"] for v, k in info["kernels"].items()}
    assert ext2["2004"] == "remap_move_buffer_ext2"
    assert ext2["6.12"] == "buffer_migrate_folio"
    # ext3 images are mounted by ext4 in 6.x: its own tables are listed, not mounted
    assert not info["kernels"]["6.12"]["a_ops"]["ext3_ordered_aops"]["mounted"]
    assert info["kernels"]["2004"]["a_ops"]["ext3_ordered_aops"]["mounted"]
    # the tables the vfat, xfs and btrfs plugins register: their strategy and source per version
    plugin_tables = {
        v: {
            t: (k["a_ops"][t]["strategy"], k["a_ops"][t]["plugin"], k["a_ops"][t]["source"])
            for t in ("fat_aops", "xfs_address_space_operations", "btrfs_aops")
        }
        for v, k in info["kernels"].items()
    }
    assert plugin_tables["5.10"]["fat_aops"][:2] == ("fallback_migrate_page", "generic_writeback")
    assert plugin_tables["6.12"]["fat_aops"][:2] == ("buffer_migrate_folio", "vfat")
    assert "ee649af0d9a6" in plugin_tables["7.2"]["fat_aops"][2]
    assert plugin_tables["5.10"]["xfs_address_space_operations"][:2] == (
        "iomap_migrate_page",
        "xfs",
    )
    assert "v6.0" in plugin_tables["6.1"]["xfs_address_space_operations"][2]
    assert plugin_tables["5.10"]["btrfs_aops"][:2] == ("btrfs_migratepage", "btrfs")
    assert "f8e6608180a3" in plugin_tables["5.10"]["btrfs_aops"][2]
    assert "e7a60a1787fc" in plugin_tables["6.1"]["btrfs_aops"][2]


def test_kernels_human_output_fits_80_columns() -> None:
    proc = invoke("kernels", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for version in VERSIONS:
        assert get_kernel(version).title in proc.stdout
    for needle in ("ext4_journalled_aops", "buffer_migrate_folio_norefs", "generic_writeback"):
        assert needle in proc.stdout
    assert proc.stderr == ""


# --------------------------------------------------------------------------- run, compare


def test_run_kernel_flag_overrides_the_scenario(journal: Path) -> None:
    report = _json(invoke("run", journal, "--kernel", "6.1", "--json"))
    assert report["kernel"] == "6.1" and report["offlined"]
    proc = invoke("run", journal, "--kernel", "6.1")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.split("\n\n")[0]
    assert "Debian Linux 6.1" in header  # the header says the kernel, before the report
    assert "Linux 6.1" in proc.stdout


def test_compare_across_kernels_side_by_side(journal: Path) -> None:
    proc = invoke("compare", journal, "--kernel", "6.1,6.12", "--json")
    assert proc.returncode == 1  # 6.12 does not offline
    out = _json(proc)
    assert list(out["kernels"]) == ["6.1", "6.12"]
    k61, k612 = out["kernels"]["6.1"], out["kernels"]["6.12"]
    assert k61["kernel"] == "6.1" and k61["offlined"] and k61["ok"]
    assert k612["kernel"] == "6.12" and not k612["offlined"]
    assert "-EINTR" in k612["reason"] and "jbd2" in k612["reason"]
    assert k612["failed_attempts"] > 0
    assert "6.12: offline failed" in proc.stderr

    human = invoke("compare", journal, "--kernel", "6.1,6.12")
    assert human.returncode == 1
    for needle in (
        "Linux 6.1",
        "Linux 6.12",
        "offlined",
        "not offlined (-EINTR)",
        "written back",
        "write I/Os",
        "flushed",
        "simulated time",
        "failed attempts",
        "jbd2",
    ):
        assert needle in human.stdout, needle


def test_compare_with_one_kernel_is_auto_against_writeback(journal: Path) -> None:
    out = _json(invoke("compare", journal, "--kernel", "6.1", "--json"))
    assert set(out) == {"auto", "writeback", "ratios"}
    assert out["auto"]["kernel"] == out["writeback"]["kernel"] == "6.1"


# --------------------------------------------------------------------------- demo


def test_demo_runs_on_6_1_then_on_each_kernel() -> None:
    proc = invoke("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.split("\n\n")[0]
    assert "Debian Linux 6.1" in header
    assert "the same scenario on each kernel" in proc.stdout
    table = proc.stdout.split("the same scenario on each kernel")[1]
    for needle in (
        "2004 seed",
        "Linux 5.10",
        "Linux 6.1",
        "Linux 6.12",
        "Linux 7.2",
        "not offlined (-EINTR)",
        "jbd2",
    ):
        assert needle in table, needle
    progress = proc.stderr.splitlines()
    assert len(progress) == 4  # one line per run beside the main one (6.1)
    assert "2004 seed" in progress[0] and "Linux 5.10" in progress[1]
    assert "Linux 6.12" in progress[2] and "Linux 7.2" in progress[3]


def test_demo_json_keeps_the_report_and_adds_kernels() -> None:
    proc = invoke("demo", "--json")
    assert proc.returncode == 0, proc.stderr
    out = _json(proc)
    assert out["kernel"] == "6.1" and out["offlined"] and out["ok"]
    assert {"migrated", "per_aops", "verify", "flushed", "failed_attempts"} <= set(out)
    kernels = out["kernels"]
    assert list(kernels) == ["2004", "5.10", "6.1", "6.12", "7.2"]
    assert kernels["6.1"]["outcome"] == "offlined" and kernels["6.1"]["exit_status"] == 0
    assert kernels["6.1"]["migrated"] == out["migrated"]  # the main run stands for 6.1
    # data=journal: 5.10 writes the pages back like 6.1; 6.12 and 7.2 refuse them (norefs)
    assert kernels["5.10"]["outcome"] == "offlined" and kernels["5.10"]["written_back"] > 0
    for version in ("6.12", "7.2"):
        assert kernels[version]["outcome"] == "not offlined (-EINTR)"
        assert "jbd2" in kernels[version]["reason"]
    for summary in kernels.values():
        assert {"written_back", "writeback_ios", "simulated_seconds", "flushed"} <= set(summary)
    assert proc.stderr == ""  # --json: no progress lines


def test_demo_kernel_runs_only_that_version() -> None:
    proc = invoke("demo", "--kernel", "6.12", "--json")
    assert proc.returncode == 1  # the main run's status: 6.12 does not offline the demo
    out = _json(proc)
    assert out["kernel"] == "6.12" and list(out["kernels"]) == ["6.12"]
    assert "-EINTR" in out["reason"]

    human = invoke("demo", "--kernel", "2004", "-q")
    assert human.stdout == ""


# --------------------------------------------------------------------------- plan


class _Answers:
    """Hooks that record which kernel ``plan`` asks about."""

    def __init__(self) -> None:
        self.kernels: list[Any] = []

    def migrate_strategy(self, mapping: Any, policy: str, kernel: Any = None) -> Any:
        self.kernels.append(kernel)

        class _S:
            name = "buffer_migrate_folio"
            rebinds = True

        return _S(), "test"


def test_plan_asks_the_plugins_about_the_chosen_kernel() -> None:
    hooks = _Answers()
    strategy_for(FsSpec("ext4"), hooks, "auto", get_kernel("6.1"))  # type: ignore[arg-type]
    assert [k.version for k in hooks.kernels] == ["6.1"]


def test_plan_kernel_flag() -> None:
    snapshot = DATA / "snapshot-synthetic.npz"
    for version in ("2004", "6.1"):
        proc = invoke("plan", snapshot, "--fs", "ext2", "--kernel", version, "--json")
        assert proc.returncode == 0, proc.stderr
        assert _json(proc)["kernel"] == version
    seed = _json(invoke("plan", snapshot, "--fs", "ext2", "--kernel", "2004", "--json"))
    assert seed["fs"]["strategy"] == "remap_move_buffer_ext2"  # the seed's ext2 rebinding
    human = invoke("plan", snapshot, "--fs", "ext2", "--kernel", "6.1")
    assert "Debian Linux 6.1" in human.stdout


def test_run_snapshot_refuses_another_kernel_for_now() -> None:
    snapshot = DATA / "snapshot-synthetic.npz"
    proc = invoke("run", "--snapshot", snapshot, "--blocks", "1", "--kernel", "6.1")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("hotremove: error: --kernel: a --snapshot run")
