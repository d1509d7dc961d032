"""Every command, every option, hostile values: exit status 2 and one line on stderr, never a
traceback (issue: a newcomer's first hour).

Each case pairs the fuzzed option with an argument that is certainly wrong (a scenario file
that does not exist, a benchmark size that is not one): whatever the fuzzed value, the command
must reject its input before doing any work, and say so in one line.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import invoke

MISSING = "/nonexistent/scenario.toml"

#: command words, the options fuzzed on them, the certainly-wrong rest of the command line
CASES: list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    (
        ("run",),
        ("--strategy", "--mode", "--seed", "--device", "--checks", "--fault", "--kernel"),
        (MISSING,),
    ),
    (("compare",), ("--mode", "--seed", "--device", "--kernel"), (MISSING,)),
    (("demo",), ("--mode", "--seed", "--device", "--checks", "--kernel", "--fault"), ("--bogus",)),
    (("bench",), ("--dirty", "--checks", "--strategy", "--scaling"), ("--size", "bogus")),
    (("plan",), ("--fs", "--device", "--strategy", "--kernel", "--flagless"), (MISSING,)),
    (("explore",), ("--schedules", "--seed", "--actors", "--mode"), (MISSING,)),
    (("sweep",), ("--workers", "--executor", "--output"), (MISSING,)),
    (("scenario", "check"), (), (MISSING,)),
    (("kernel", "run"), ("--kernel", "--timeout", "--offline-timeout"), (MISSING,)),
    (("kernel", "diff"), ("--kernel", "--timeout"), (MISSING,)),
    (("new-plugin",), ("--fs-type", "--aops"), ("x", "--dir", "/proc/nonexistent/x")),
]

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "-1", "0", "1e309", "nan", "inf", "99999999999999999999", "--", "=",
                     "6.10", "x" * 500, "/proc/self/mem", "../../etc", "\x00", "é", "auto,,"]),
)  # fmt: skip


def assert_one_line_exit_2(args: list[str]) -> None:
    proc = invoke(*args)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr[-500:])
    assert "Traceback" not in proc.stderr, args
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hotremove"), (args, proc.stderr[-500:])


EXAMPLES = int(os.environ.get("HOTREMOVE_FUZZ_EXAMPLES", "150"))  # more: a longer hunt


@settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(case=st.sampled_from(CASES), data=st.data())
def test_hostile_option_values_are_one_line_exit_2(case, data) -> None:
    words, options, wrong = case
    args = [*words]
    if options:
        option = data.draw(st.sampled_from(options))
        value = data.draw(HOSTILE)
        args += [option, value]
    assert_one_line_exit_2([*args, *wrong])


@settings(max_examples=60, deadline=None, database=None)
@given(version=st.text(max_size=12).filter(lambda v: v not in ("6.1", "6.12")))
def test_a_kernel_that_is_not_modelled_cannot_be_fetched(version: str) -> None:
    assert_one_line_exit_2(["kernel", "fetch", version])


# --------------------------------------------------------------------------- every file format
# Generated files of each format (scenario, grid, results CSV, snapshot) and generated values of
# the environment variables the CLI reads: whatever the input, exit 0/1 with a result or exit 2
# with one line naming what is wrong — never a traceback (``invoke`` re-raises any exception a
# command lets out), never a hang (every read is bounded, FIFOs and devices refused).


DATA = Path(__file__).parent / "data"
#: examples per format (a fixed, derandomized budget: the "hotremove" hypothesis profile)
BUDGET = int(os.environ.get("HOTREMOVE_FUZZ_FORMAT_EXAMPLES", "60"))

ONE_LINE = re.compile(r"^hotremove: (error: )?\S")


def contract(proc, *statuses: int) -> None:
    """Exit 0/1 (a result), or 2 and one line on stderr naming the problem."""
    assert proc.returncode in (*statuses, 2), (proc.returncode, proc.stderr[-600:])
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and ONE_LINE.match(lines[0]), proc.stderr[-600:]
        assert "\x1b" not in lines[0]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: dict) -> str:
    """``data`` as TOML: one ``key = value`` line per top-level key (inline tables)."""
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in data.items())


SIZE_TEXT = st.sampled_from(
    [
        "64MiB",
        "1GiB",
        "0",
        "-1",
        "1.5GiB",
        "9" * 400,
        "1e309",
        "nan",
        "１２８MiB",
        "4 KiB",
        "0.1B",
        " ",
        "64 MiB ",
        "99999999TiB",
    ]
)
SCALAR = st.one_of(
    st.none().map(lambda _: "x"),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, 7, 8, 4096, 1 << 20, 2**63, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    SIZE_TEXT,
)
VALUE = st.recursive(
    SCALAR,
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(st.sampled_from(["size", "files", "name", "x"]), c, max_size=2)
    ),
    max_leaves=6,
)
SECTIONS = {
    "memory": ["size", "block_size"],
    "workload": ["seed", "dirty", "cached", "anon", "thp", "unmovable", "placement", "pinned"],
    "remove": ["blocks", "mode", "strategy", "checks", "timeout", "max_rounds"],
    "device": ["preset"],
    "kernel": ["version", "dirty_writeback_centisecs"],
    "faults": ["writeback_eio", "enomem_after", "plugin_raises"],
}
BASE_SCENARIO = {
    "memory": {"size": "32MiB", "block_size": "8MiB"},
    "filesystem": [{"name": "fs", "size": "4MiB", "files": 8, "file_size": "16KiB"}],
}


@st.composite
def scenarios(draw) -> dict:
    """A valid small scenario with a few keys set to hostile values (the filesystem table's
    own types are part B's: only keys outside it are fuzzed here)."""
    data = json.loads(json.dumps(BASE_SCENARIO))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([*SECTIONS, "bogus"]))
        key = draw(st.sampled_from([*SECTIONS.get(section, ["x"]), "bogus"]))
        data.setdefault(section, {})
        if isinstance(data[section], dict):
            data[section][key] = draw(VALUE)
    return data


@settings(max_examples=BUDGET)
@given(data=scenarios())
def test_generated_scenarios_are_checked_or_refused_in_one_line_the_same_by_run(
    tmp_path_factory, data
) -> None:
    path = tmp_path_factory.mktemp("scn") / "s.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    check = invoke("scenario", "check", path)
    contract(check, 0)
    if check.returncode == 2:  # run refuses it with the very same line (one validation path)
        run = invoke("run", path)
        assert run.returncode == 2 and run.stderr == check.stderr, (run.stderr, check.stderr)


AXIS_KEYS = st.sampled_from(
    [
        "workload.dirty",
        "workload.seed",
        "memory.size",
        "remove.blocks",
        "filesystem[0].files",
        "filesystem[*].size",
        "filesystem[9].files",
        "remove.strategy",
        "kernel.version",
        "bogus.key",
        "workload",
    ]
)
AXIS_SPEC = st.one_of(
    st.lists(SCALAR, min_size=0, max_size=4),
    st.fixed_dictionaries({"range": st.lists(SCALAR, max_size=3)}, optional={"step": SCALAR}),
    SCALAR,
)


@settings(max_examples=BUDGET)
@given(
    axes=st.dictionaries(AXIS_KEYS, AXIS_SPEC, min_size=1, max_size=3),
    plot=st.dictionaries(
        st.sampled_from(["x", "y", "lines", "logy", "ratio", "zz"]), VALUE, max_size=2
    ),
)
def test_generated_grids_list_or_are_refused_in_one_line(tmp_path_factory, axes, plot) -> None:
    where = tmp_path_factory.mktemp("grid")
    text = to_toml({"name": "g", "base": BASE_SCENARIO, "axes": axes, "plot": plot})
    (where / "g.toml").write_text(text, encoding="utf-8")
    contract(invoke("sweep", where / "g.toml", "-o", where / "g.csv", "--list"), 0)


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> tuple[Path, list[str], list[str], list[str]]:
    """A real one-run results file: (grid, header, row cells, the other lines)."""
    import csv

    from hotremove import sweep as sw
    from hotremove.sweep.rows import header, run_one

    where = tmp_path_factory.mktemp("fuzz-results")
    grid_file = where / "r.toml"
    grid_file.write_text(
        to_toml({"name": "r", "base": BASE_SCENARIO, "axes": {"workload.seed": [1]}})
    )
    grid = sw.load_grid(grid_file)
    (run,) = grid.runs
    os.environ["HOTREMOVE_CACHE"] = str(where / "cache")
    try:
        row = run_one(run.run_id, run.scenario, grid.name)
    finally:
        del os.environ["HOTREMOVE_CACHE"]
    out = where / "r.csv"
    results = sw.ResultsFile(out, header(grid))
    results.open(resume=False, overwrite=True)
    results.append({**row, "run_index": run.index, **run.values})
    results.close()
    lines = out.read_text().splitlines()
    return grid_file, next(csv.reader([lines[0]])), next(csv.reader([lines[1]])), lines


CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "abc",
            "nan",
            "inf",
            "-1",
            "1" + "0" * 30,
            "1e30",
            "[1e30]",
            '["x"]',
            "[1, 1]",
            "[-1]",
            "true",
            "yes",
            "null",
            "{}",
            "NaN",
            "ok",
            "error",
            "1.5",
            "０",
            "[" * 2000,
            "\x00",
            "\u202e",
        ]
    ),
    st.text(max_size=12),
    st.integers(-(2**70), 2**70).map(str),
)


@settings(max_examples=BUDGET)
@given(data=st.data())
def test_generated_results_rows_under_a_recomputed_checksum_are_read_or_refused(
    results_file, tmp_path_factory, data
) -> None:
    import csv
    import io

    from hotremove.sweep.results import checksum

    grid, head, cells, _ = results_file
    edited = list(cells)
    for _ in range(data.draw(st.integers(1, 3))):
        column = data.draw(st.sampled_from(head[:-2]))
        edited[head.index(column)] = data.draw(CELL)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(edited[:-1])
    body = buf.getvalue()
    path = tmp_path_factory.mktemp("res") / "r.csv"
    line = body + "," + checksum(body.encode("utf-8", "surrogatepass"))
    path.write_text(",".join(head) + "\n" + line + "\n", encoding="utf-8", errors="surrogatepass")
    contract(invoke("sweep", grid, "-o", path, "--list"), 0)


def _header_paths(header: dict) -> list[tuple]:
    paths: list[tuple] = [(k,) for k in header]
    paths += [("blocks", 0, k) for k in header["blocks"][0]] + [("blocks", 3)]
    paths += [("mounts", 0, k) for k in header["mounts"][0]] + [("meminfo", "MemFree")]
    return paths


JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["\x1b[2J", "[red]x[/]", "[/bold]", "x" * 5000]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=6,
)


@settings(max_examples=max(20, BUDGET // 2))
@given(data=st.data())
def test_generated_snapshot_headers_plan_or_are_refused_in_one_line(tmp_path_factory, data):
    """The synthetic snapshot with its header edited (its checksum, over the page flags,
    still holds): plan ranks it or refuses it in one line naming the field."""
    with np.load(DATA / "snapshot-synthetic.npz") as npz:
        header = json.loads(npz["header"].tobytes())
        flags, counts = npz["flags"], npz["counts"]
    paths = _header_paths(header)
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(paths))
        target = header
        for part in path[:-1]:  # an earlier edit may have replaced a container: skip
            ok = isinstance(target, dict) and part in target
            ok = ok or (isinstance(target, list) and isinstance(part, int) and part < len(target))
            if not ok:
                break
            target = target[part]
        value = data.draw(JSON_VALUE)
        if isinstance(target, list):
            target.append(value)
        elif not isinstance(target, dict):
            continue
        elif data.draw(st.booleans()) or path[-1] == "checksum":
            target[path[-1]] = value
        else:
            target.pop(path[-1], None)
    out = tmp_path_factory.mktemp("snap") / "s.npz"
    text = json.dumps(header).encode("utf-8", "surrogatepass")
    np.savez_compressed(out, header=np.frombuffer(text, np.uint8), flags=flags, counts=counts)
    contract(invoke("plan", out, "--fs", "ext2", "--json"), 0)


ENV_VARS = [
    "HOTREMOVE_MEMORY_LIMIT",
    "HOTREMOVE_CACHE_LIMIT",
    "HOTREMOVE_LOG_LEVEL",
    "HOTREMOVE_LOG_FORMAT",
    "HOTREMOVE_PLUGINS",
    "HOTREMOVE_DISABLE_PLUGIN_AUTOLOAD",
    "HOTREMOVE_TRACE_HOOKS",
    "COLUMNS",
    "HOTREMOVE_CACHE",
]
ENV_VALUE = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=20,
    ),
    st.sampled_from(
        [
            "0",
            "-1",
            "9" * 400,
            "nan",
            "1GiB",
            "1KiB",
            "debug",
            "json",
            "ext2,,",
            "/dev/null",
            "/proc/self",
            "1",
            "100000000",
        ]
    ),
)


@settings(max_examples=BUDGET)
@given(var=st.sampled_from(ENV_VARS), value=ENV_VALUE)
def test_generated_environment_variables_never_crash_a_command(tmp_path_factory, var, value):
    where = tmp_path_factory.mktemp("env")
    scenario = where / "s.toml"
    scenario.write_text(to_toml(BASE_SCENARIO))
    env = {var: value}
    if var != "HOTREMOVE_CACHE":
        env["HOTREMOVE_CACHE"] = str(where / "cache")
    contract(invoke("scenario", "check", scenario, env=env), 0)
    contract(invoke("cache", "list", env=env), 0)
    contract(invoke("plan", DATA / "snapshot-synthetic.npz", "--fs", "ext2", "-q", env=env), 0)
