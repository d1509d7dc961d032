"""Every command, every option, hostile values: exit status 2 and one line on stderr, never a
traceback (issue: a newcomer's first hour).

Each case pairs the fuzzed option with an argument that is certainly wrong (a scenario file
that does not exist, a benchmark size that is not one): whatever the fuzzed value, the command
must reject its input before doing any work, and say so in one line.
"""

from __future__ import annotations

import os

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
