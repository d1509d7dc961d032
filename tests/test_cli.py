"""The ``hotremove`` command as scripts use it: its output, messages and exit status.

Pins the command-line contract (docs/cli.md): ``--json`` is one JSON object on stdout with
logs on stderr, exit 0 / 1 / 2, one-line errors for bad input, and the comparison, plugin
listing and scenario commands other tools read. Commands run in this process
(:func:`invoke`) unless the test is about the process itself (:func:`hotremove`); Ctrl-C is
tested in ``test_interrupt_cli``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hotremove.cli import ratio
from hotremove.scenario import Scenario

from .conftest import hotremove, invoke

#: A machine small enough that one run takes a few tenths of a second.
SMALL = """\
[memory]
size = "64MiB"
block_size = "16MiB"

[[filesystem]]
name = "home"
type = "ext2"
block_size = 1024
size = "4MiB"
files = 24
file_size = "32KiB"

[[filesystem]]
name = "mail"
type = "ext3"
block_size = 2048
size = "4MiB"
files = 8
file_size = "32KiB"
options = ["data=journal"]

[[filesystem]]
name = "data4"
type = "ext4"
block_size = 4096
size = "4MiB"
files = 8
file_size = "32KiB"

[workload]
seed = 3
dirty = 0.5
anon = "512KiB"

[remove]
blocks = [1]

# Linux 6.12 cannot migrate data=journal pages while jbd2 holds their buffers (the offline
# ends with the signal, -EINTR: test_kernels_cli); these tests are about the command line
[kernel]
version = "6.1"
"""

REPORT_KEYS = {
    "pages_in_region",
    "migrated",
    "rebound",
    "written_back",
    "writeback_ios",
    "isolated_free",
    "failed",
    "offlined",
    "simulated_seconds",
    "strategies",
    "verify",
}


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hotremove: error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# --------------------------------------------------------------------------- run


def test_run_json_is_one_object_on_stdout_and_logs_go_to_stderr(small: Path) -> None:
    # a process: its stdout and its stderr are what a script reads
    proc = hotremove("run", small, "--json", "--log-level", "info", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # the whole of stdout is one object
    assert isinstance(report, dict)
    assert report.keys() >= REPORT_KEYS
    assert report["offlined"] is True
    assert report["verify"]["ok"] is True
    assert report["failed"] == []
    assert report["strategies"]["ext2_aops"] == "ext2"
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    passes = [e for e in events if e["event"] == "pass_finished"]
    assert passes, proc.stderr
    # run context bound by the runner reaches every line through merge_contextvars
    assert all(e["scenario"] == "small" and e["seed"] == 3 for e in passes)
    assert {"timestamp", "level", "logger"} <= passes[0].keys()


def test_run_human_report_and_quiet(small: Path) -> None:
    proc = invoke("run", small)
    assert proc.returncode == 0, proc.stderr
    for needle in ("ext2_aops", "buffer_migrate_folio", "offlined", "verified", "e2fsck clean"):
        assert needle in proc.stdout
    assert proc.stderr == ""  # default log level is warning: nothing to say

    quiet = invoke("run", small, "--quiet")
    assert quiet.returncode == 0
    assert quiet.stdout == "" and quiet.stderr == ""


def test_debug_logs_one_event_per_migrated_page(small: Path) -> None:
    proc = invoke("--log-level", "debug", "--log-format", "json", "run", small, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    events = [json.loads(line)["event"] for line in proc.stderr.splitlines()]
    assert events.count("page_migrated") == report["migrated"]


def test_console_log_format_is_not_json(small: Path) -> None:
    proc = invoke("run", small, "--json", "--log-level", "info", "--log-format", "console")
    assert proc.returncode == 0
    json.loads(proc.stdout)
    assert "pass_finished" in proc.stderr
    assert not proc.stderr.lstrip().startswith("{")


def test_flags_override_the_scenario_file(small: Path) -> None:
    proc = invoke(
        "run", small, "--json", "--strategy", "writeback", "--seed", "7", "--mode", "sync_light"
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["seed"] == 7
    assert report["policy"] == "writeback"
    assert report["mode"] == "sync_light"
    assert report["rebound"] == 0
    assert report["strategies"]["ext2_aops"] == "generic_writeback"


def test_keep_images_creates_the_directory_and_keeps_every_image(
    small: Path, tmp_path: Path
) -> None:
    keep = tmp_path / "kept" / "images"
    proc = invoke("run", small, "--json", "--keep-images", keep)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in keep.iterdir()) == ["data4.img", "home.img", "mail.img"]


def test_failed_offline_exits_1_with_a_json_report(tmp_path: Path) -> None:
    path = tmp_path / "pinned.toml"
    path.write_text(
        SMALL.replace('anon = "512KiB"', 'anon = "512KiB"\nunmovable = 2\nunmovable_blocks = [1]')
    )
    proc = invoke("run", path, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["offlined"] is False
    assert report["failed"]
    assert proc.stderr.startswith("hotremove: offline failed")


# --------------------------------------------------------------------------- bad input


BAD_SCENARIOS = {
    "malformed TOML": ("[memory\nsize = 1\n", ["invalid TOML"]),
    "unknown key": (SMALL.replace("[memory]", "[memory]\ncolour = 1"), ["memory.colour"]),
    "impossible size": (SMALL.replace('size = "64MiB"', 'size = "64 parsecs"'), ["memory.size"]),
    "nonexistent block": (SMALL.replace("blocks = [1]", "blocks = [9]"), ["block 9"]),
    "files too big": (SMALL.replace("files = 24", "files = 2400"), ["filesystem[0].files"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_scenario_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    text, needles = BAD_SCENARIOS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(invoke("run", path, "--json"), *needles)


@pytest.mark.parametrize("command", [["compare", "FILE", "--json"], ["scenario", "check", "FILE"]])
def test_every_command_reports_bad_scenarios_the_same_way(
    command: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_SCENARIOS["unknown key"][0])
    args = [path if arg == "FILE" else arg for arg in command]
    assert_one_line_error(invoke(*args), "memory.colour: unknown key")


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(invoke("run", tmp_path / "nope.toml", "--json"), "nope.toml")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--strategy", "teleport"], "remove.strategy"),
        (["--mode", "fast"], "--mode"),
        (["--seed", "many"], "--seed"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_flag_is_one_line_and_exit_2(small: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(invoke("run", small, *args), needle)


def test_usage_errors_are_one_line() -> None:
    assert_one_line_error(invoke("run"), "SCENARIO.toml")
    assert_one_line_error(invoke("teleport"), "teleport")


def test_keep_images_that_cannot_be_created_is_one_line(small: Path) -> None:
    assert_one_line_error(invoke("run", small, "--keep-images", small / "sub"), "--keep-images")


def test_missing_e2fsprogs_is_one_line(small: Path, tmp_path: Path) -> None:
    code = (
        "import sys, hotremove_e2fs.tools as tools; tools._SBIN_DIRS = (); "
        "from hotremove.cli import run_cli; sys.exit(run_cli(sys.argv[1:]))"
    )
    proc = hotremove("run", small, "--json", code=code, env={"PATH": str(tmp_path)}, timeout=60)
    assert_one_line_error(proc, "e2fsprogs", "apt-get install e2fsprogs")


# --------------------------------------------------------------------------- compare


def test_compare_json_rebinding_against_writeback(small: Path) -> None:
    proc = invoke("compare", small, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"auto", "writeback", "ratios"}
    auto, wb = out["auto"], out["writeback"]
    assert auto["policy"] == "auto" and wb["policy"] == "writeback"
    assert auto["seed"] == wb["seed"] == 3
    assert auto["pages_in_region"] == wb["pages_in_region"]
    assert wb["writeback_ios"] > 0
    assert auto["per_aops"]["ext2_aops"]["write_requests"] == 0
    assert wb["per_aops"]["ext2_aops"]["write_requests"] > 0
    assert auto["verify"]["ok"] and wb["verify"]["ok"]
    ratios = out["ratios"]
    assert set(ratios) == {"writeback_ios", "simulated_seconds", "wall_seconds"}
    if auto["writeback_ios"]:
        assert ratios["writeback_ios"] == pytest.approx(wb["writeback_ios"] / auto["writeback_ios"])
    else:
        assert ratios["writeback_ios"] == "inf"
    assert ratios["simulated_seconds"] > 1


def test_compare_human_table(small: Path) -> None:
    proc = invoke("compare", small)
    assert proc.returncode == 0, proc.stderr
    for needle in ("auto", "writeback", "write I/Os", "simulated time", "ext2_aops"):
        assert needle in proc.stdout


@pytest.mark.parametrize(
    ("extra", "runs", "status"),
    [
        ((), ("1/2: auto", "2/2: writeback"), 0),
        # the 2004 seed breaks invariants on this machine's data=journal pages: exit 1
        (("--kernel", "6.1,2004"), ("1/2: kernel 6.1", "2/2: kernel 2004"), 1),
    ],
)
def test_compare_progress_names_each_run_on_stderr(
    small: Path, extra: tuple[str, ...], runs: tuple[str, ...], status: int
) -> None:
    """--progress into a file: one line per run on stderr (a bar is drawn there only at the
    end); stdout stays one JSON object."""
    proc = invoke("compare", small, *extra, "--progress", "--json")
    assert proc.returncode == status, proc.stderr
    json.loads(proc.stdout)
    for run in runs:
        assert f"compare small {run}" in proc.stderr
    quiet = invoke("compare", small, *extra, "--json")  # not a terminal: no progress
    assert "compare small 1/2" not in quiet.stderr


def test_ratio_never_divides_by_zero() -> None:
    assert ratio(6, 3) == 2.0
    assert ratio(5, 0) == "inf"
    assert ratio(0, 0) is None
    assert ratio(0, 4) == 0.0


# --------------------------------------------------------------------------- plugins


def test_plugins_json_lists_the_builtin_plugins_with_their_dists() -> None:
    proc = invoke("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["group"] == "hotremove" and listed["hotremove_version"]
    plugins = {p["name"]: p for p in listed["plugins"]}
    expected = {
        "ext2": "hotremove-ext2",
        "ext3": "hotremove-ext3",
        "generic_writeback": "hotremove-generic-writeback",
    }
    for name, dist in expected.items():
        info = plugins[name]
        assert info["dist"] == dist
        assert info["version"]
        assert info["error"] is None
        assert "hotremove_migrate_strategy" in info["hooks"]
        assert {"name", "dist", "version", "hooks", "error"} <= info.keys()
    assert "ext2_aops" in plugins["ext2"]["aops"]
    assert "ext3_journalled_aops" in plugins["ext3"]["aops"]
    # the filesystem types each plugin brings (hotremove_register_filesystem_types)
    assert [plugins[n]["types"] for n in ("ext2", "ext3", "ext4")] == [["ext2"], ["ext3"], ["ext4"]]
    assert plugins["generic_writeback"]["types"] == []


def test_plugins_table() -> None:
    proc = invoke("plugins")
    assert proc.returncode == 0, proc.stderr
    for needle in ("ext2", "hotremove-ext3", "generic_writeback", "ext2_aops", "migrate_strategy"):
        assert needle in proc.stdout


# --------------------------------------------------------------------------- scenario


def _keys(model: type[Any], prefix: str = "") -> set[str]:
    """Every key of the scenario schema, dotted (``workload.seed``)."""
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (None,))[0]
        sub = annotation if isinstance(annotation, type) else inner
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            keys |= _keys(sub, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_scenario_passes_check_and_shows_every_key(tmp_path: Path) -> None:
    proc = invoke("scenario", "--example")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "example.toml"
    path.write_text(proc.stdout)
    check = invoke("scenario", "check", path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: ")
    lines = proc.stdout.splitlines()
    for key in sorted(_keys(Scenario)):
        section, _, name = key.rpartition(".")
        header = f"[[{section}]]" if section == "filesystem" else f"[{section}]"
        assert header in lines, f"example has no {header} section"
        # keys without a TOML default (None) are shown commented out
        shown = (f"{name} = ", f"# {name} = ")
        assert any(line.startswith(shown) for line in lines), f"example lacks {key}"
    comments = sum(line.startswith("#") for line in lines)
    assert comments >= len(_keys(Scenario))


def test_demo_scenario_is_printable_and_valid(tmp_path: Path) -> None:
    proc = invoke("scenario", "--demo")
    assert proc.returncode == 0
    path = tmp_path / "demo.toml"
    path.write_text(proc.stdout)
    assert invoke("scenario", "check", path).returncode == 0


def test_scenario_without_arguments_prints_help() -> None:
    proc = invoke("scenario")
    assert proc.returncode == 0
    assert "check" in proc.stdout and "--example" in proc.stdout


# --------------------------------------------------------------------------- demo


def test_demo_smoke() -> None:
    # the demo runs on Linux 6.1: ext3 images are mounted by ext4 (ext4_da_aops and
    # ext4_journalled_aops), then the same scenario on each kernel (test_kernels_cli)
    proc = invoke("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for needle in (
        "ext2_aops",
        "ext4_da_aops",
        "ext4_journalled_aops",
        "Debian Linux 6.1",
        "anon",
        "generic_writeback",
        "offlined",
        "verified",
        "e2fsck clean",
        "whole run",
        "the same scenario on each kernel",
    ):
        assert needle in proc.stdout
    # one progress line per extra kernel run, nothing else
    assert all(line.startswith("hotremove demo: ") for line in proc.stderr.splitlines())


def test_fault_flags_roll_back_and_still_verify() -> None:
    # the seed writes a dirty page back and waits for it: the injected errors hit the offline
    proc = invoke(
        "demo",
        *("--json", "--kernel", "2004", "--strategy", "writeback", "--fault", "writeback_eio=0.5"),
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert not report["offlined"] and "-EIO" in report["reason"]
    assert report["verify"]["ok"] and report["checks"] == []


def test_bad_fault_flag_is_one_line() -> None:
    proc = invoke("demo", "--fault", "no_such_fault=1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hotremove: error: faults.no_such_fault: unknown key"


def test_a_fault_for_a_plugin_that_is_not_installed_is_refused(small: Path) -> None:
    proc = invoke("run", small, "--fault", "plugin_raises=ext22")
    assert_one_line_error(
        proc, "faults.plugin_raises: no installed plugin 'ext22' (did you mean 'ext2'?)"
    )


def test_an_unknown_strategy_suggests_the_closest(small: Path) -> None:
    proc = invoke("run", small, "--strategy", "writebak")
    assert_one_line_error(proc, "did you mean 'writeback'?")


def test_every_report_names_what_produced_it(small: Path) -> None:
    from hotremove import __version__

    report = json.loads(invoke("run", small, "--json").stdout)
    assert report["hotremove_version"] == __version__
    assert report["kernel"] == "6.1"
    assert {"ext2", "ext4", "generic_writeback"} <= set(report["plugins"])
    assert all(version for version in report["plugins"].values())


@pytest.mark.parametrize(
    "args",
    [
        ("new-plugin", "foo", "--dir", "/proc/nonexistent/x"),
        ("bench", "--cache", "/proc/nonexistent", "--size", "64MiB"),
    ],
)
def test_a_path_that_cannot_be_made_is_one_line_exit_2(args: tuple[str, ...]) -> None:
    assert_one_line_error(invoke(*args), "/proc/nonexistent")


def test_a_run_that_would_not_fit_in_memory_is_refused_before_any_work(small: Path) -> None:
    limited = {"HOTREMOVE_MEMORY_LIMIT": "64MiB"}  # the small scenario simulates 64 MiB of RAM
    proc = invoke("run", small, env=limited)
    line = assert_one_line_error(proc, "memory.size: this run needs about", "--force")
    assert "0.1 GiB is available" in line
    forced = invoke("run", small, "--force", "--json", env=limited)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["offlined"]


@pytest.mark.parametrize("extra", [(), ("--kernel", "6.1,6.12")])
def test_a_compare_that_would_not_fit_in_memory_is_refused_before_any_work(
    small: Path, extra: tuple[str, ...]
) -> None:
    """Each run of the comparison (each strategy, or each kernel) is checked before the first
    is built; --force runs them anyway."""
    limited = {"HOTREMOVE_MEMORY_LIMIT": "64MiB"}
    proc = invoke("compare", small, *extra, env=limited)
    assert_one_line_error(proc, "memory.size: this run needs about", "--force")
    forced = invoke("compare", small, *extra, "--force", "--json", env=limited)
    assert forced.returncode in (0, 1), forced.stderr  # 6.12 ends -EINTR here: exit 1
    assert json.loads(forced.stdout)


def test_a_bad_scaling_list_is_refused_before_any_benchmark() -> None:
    proc = invoke("bench", "--size", "64MiB", "--scaling", "1GiB,x", "--json")
    assert_one_line_error(proc, "--scaling: 'x' is not a size")


def test_the_report_is_readable_at_80_columns(small: Path) -> None:
    """An 80-column terminal gets every count and every strategy, nothing cut to "…"."""
    proc = invoke("run", small, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())
    assert "ext2_aops: buffer_migrate_folio (ext2)" in proc.stdout


def assert_fits(stdout: str, width: int) -> list[str]:
    """Every line within ``width`` columns, nothing cut to "…"; the lines."""
    lines = stdout.splitlines()
    assert "…" not in stdout
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    return lines


def test_compare_is_readable_at_80_columns_and_wide_on_request(small: Path) -> None:
    """At 80 columns the per-a_ops strategies move to a second table keyed by a_ops; --wide
    puts every column in one table, at a terminal's width as into a pipe."""
    values = (
        "pages migrated",
        "writeback / auto",
        "ext4_journalled_aops",
        "fallback_migrate_folio (generic_writeback)",
        "buffer_migrate_folio (ext2)",
        "×",
    )
    narrow = invoke("compare", small, env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    assert_fits(narrow.stdout, 80)
    for value in values:
        assert value in narrow.stdout
    assert "(continued)" in narrow.stdout
    for env in ({"COLUMNS": "80"}, {}):  # a terminal's width, or a pipe
        wide = invoke("compare", small, "--wide", env=env)
        assert wide.returncode == 0, wide.stderr
        assert "…" not in wide.stdout and "(continued)" not in wide.stdout
        (head,) = [line for line in wide.stdout.splitlines() if "a_ops" in line and "┃" in line]
        for column in ("a_ops", "auto", "writeback", "auto strategy (plugin)"):
            assert column in head


def test_compare_kernels_is_readable_at_80_columns(small: Path) -> None:
    proc = invoke("compare", small, "--kernel", "6.1,6.12", env={"COLUMNS": "80"})
    assert proc.returncode == 1, proc.stderr  # 6.12 ends -EINTR on the data=journal pages
    text = " ".join(assert_fits(proc.stdout, 80))
    for value in ("Linux 6.1", "Linux 6.12", "not offlined (-EINTR)", "failed attempts"):
        assert value in text
    assert "buffer held by jbd2" in text  # the reason, wrapped at a word, not cut


def test_the_json_report_says_where_the_wall_time_went(small: Path) -> None:
    """build, offline and verification each timed, so a slow run shows its slow phase."""
    proc = invoke("run", small, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["build_seconds"] > 0 and report["wall_seconds"] > 0
    assert report["verify_seconds"] > 0 and report["verify"]["ok"]
