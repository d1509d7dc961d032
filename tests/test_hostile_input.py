"""Hostile input: every scenario either runs or fails with one line naming the key; damaged
images fail verification instead of crashing; nothing writes to /proc or /sys."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hotremove.errors import HotremoveError, ScenarioError
from hotremove.scenario import loads, validate
from hotremove.sim.runner import run_scenario

SOURCE = Path(__file__).resolve().parents[1]

toml_text = st.text(
    alphabet=st.sampled_from(list('[]="., \n0123456789abcdefghijklmnopqrstuvwxyzMiBGK_-')),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(toml_text)
def test_arbitrary_text_is_a_scenario_or_one_line_error(text):
    try:
        loads(text)
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(exc)


keys = st.sampled_from(
    [
        "memory",
        "filesystem",
        "workload",
        "remove",
        "device",
        "faults",
        "size",
        "block_size",
        "blocks",
        "dirty",
        "files",
        "type",
        "bogus",
    ]
)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_arbitrary_structures_validate_or_name_the_key(data):
    try:
        validate(data)
    except ScenarioError as exc:
        message = str(exc)
        assert "\n" not in message
        assert re.match(r"^[\w\[\]\.]+: |^[\w ]", message), message


MiB = 1 << 20
small_extreme = st.fixed_dictionaries(
    {
        "memory": st.fixed_dictionaries(
            {
                "size": st.sampled_from([8 * MiB, 16 * MiB, 32 * MiB]),
                "block_size": st.sampled_from([4 * MiB, 8 * MiB]),
            }
        ),
        "filesystem": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["a", "b", "c"]),
                    "type": st.sampled_from(["ext2", "ext3", "ext4"]),
                    "block_size": st.sampled_from([1024, 2048, 4096]),
                    "size": st.sampled_from([MiB, 2 * MiB, 4 * MiB]),
                    "files": st.integers(0, 40),
                    "file_size": st.sampled_from([0, 1, 4095, 4096, 65536]),
                }
            ),
            max_size=2,
            unique_by=lambda fs: fs["name"],
        ),
        "workload": st.fixed_dictionaries(
            {
                "dirty": st.sampled_from([0.0, 1.0, 0.5]),
                "cached": st.sampled_from([0.0, 1.0]),
                "anon": st.sampled_from([0, 4096, MiB]),
                "unmovable": st.integers(0, 3),
                "placement": st.sampled_from(["spread", "fill"]),
            }
        ),
        "remove": st.fixed_dictionaries(
            {
                "blocks": st.lists(st.integers(0, 3), min_size=1, max_size=2),
                "mode": st.sampled_from(["async", "sync_light", "sync"]),
            }
        ),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_extreme)
def test_extreme_but_structurally_valid_scenarios_run_or_exit_cleanly(data):
    """Zero-size files, a region of almost all blocks, 0 or 1 dirty share, more files than
    fit, unmovable pages: either a verified report or a one-line HotremoveError."""
    try:
        scenario = validate(data)
    except ScenarioError as exc:
        assert "\n" not in str(exc)
        event(f"rejected: {str(exc).split(':')[0]}")
        return
    try:
        report = run_scenario(scenario)
    except HotremoveError as exc:
        assert "\n" not in str(exc)
        event(f"exit 2: {type(exc).__name__}")
        return
    event("ran: offlined" if report.offline.offlined else "ran: rolled back")
    assert report.verify is not None and report.verify.ok, report.verify.as_dict()
    assert not report.offline.check_failures
    if not report.offline.offlined:
        assert report.offline.reason


def test_huge_counts_are_refused_before_any_work():
    for text, key in [
        ('[memory]\nsize = "1TiB"\nblock_size = "1GiB"', "memory.size"),
        ('[[filesystem]]\nname = "a"\nfiles = 10000000', "filesystem[0].files"),
        ("[workload]\nthp = 100000", "workload.thp"),
        ('[[filesystem]]\nname = "a"\nsize = "100TiB"', "filesystem[0].size"),
    ]:
        try:
            loads(text)
        except ScenarioError as exc:
            assert str(exc).startswith(key), str(exc)
        else:
            raise AssertionError(f"{key} accepted")


def test_damaged_image_fails_verification_without_crashing(hotremove_build, hotremove_verify):
    from hotremove.testing import small_scenario

    built = hotremove_build(small_scenario({"type": "ext2"}))
    image = built.images["fs0"]
    with open(image, "r+b") as f:
        f.seek(1024)  # the superblock
        f.write(b"\0" * 1024)
    verdict = hotremove_verify(built)
    assert not verdict.ok
    assert not verdict.fsck["fs0"]["ok"]
    assert verdict.mismatches and "error" in verdict.mismatches[0]


def test_truncated_image_is_a_one_line_error(tmp_path):
    from hotremove.errors import ImageError
    from hotremove.fs.fstype import ProbeConfig
    from hotremove.fs.registry import known

    ext2 = known("ext2")
    cfg = ProbeConfig(name="x", type="ext2", block_size=1024, size=4 * MiB)
    image = tmp_path / "x.img"
    ext2.make_image(image, cfg, {"f": b"x" * 50000})
    with open(image, "r+b") as f:
        f.truncate(20000)
    try:
        ext2.map_files(image, cfg, ["f"])
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        raise AssertionError("a truncated image must not load")


WRITE_PATTERNS = [
    re.compile(r"open\([^)]*[\"'](/proc|/sys)[^\"']*[\"'][^)]*[\"'][wa+]"),
    re.compile(r"(/proc|/sys)[^\"']*[\"']\)?\.write_(text|bytes)"),
    re.compile(r"echo [^|]*> */(proc|sys)/"),
]


#: the one write allowed: the benchmark resets its own process's peak-RSS counter
OWN_PROCESS = ('open("/proc/self/clear_refs"',)


def test_nothing_in_the_package_writes_to_proc_or_sys():
    offenders = []
    for path in (SOURCE / "core" / "src").rglob("*.py"):
        text = path.read_text()
        for pattern in WRITE_PATTERNS:
            offenders += [f"{path}: {m.group(0)}" for m in pattern.finditer(text)]
        if "/sys/" in text or "/proc/" in text:
            for line in text.splitlines():
                if ("/sys/" in line or "/proc/" in line) and re.search(
                    r"\b(os\.write|pwrite|\.write\(|O_WRONLY|O_RDWR)", line
                ):
                    offenders.append(f"{path}: {line.strip()}")
    assert [o for o in offenders if not any(allowed in o for allowed in OWN_PROCESS)] == []
