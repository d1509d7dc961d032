"""``hotremove kernel fuzz``: the generator, the shrinker, the results file (no QEMU), and one
real-kernel run of two cases in one boot (opt-in, ``-m realkernel``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotremove.realkernel.fuzz import results as res
from hotremove.realkernel.fuzz.batch import WRAPPER, _segments
from hotremove.realkernel.fuzz.generate import (
    DIMM_BLOCKS,
    MAX_CACHE,
    cases,
    generate,
)
from hotremove.realkernel.fuzz.judge import simulate
from hotremove.realkernel.fuzz.shrink import reductions, shrink
from hotremove.realkernel.fuzz.toml import dumps
from hotremove.realkernel.run import check_mirrorable
from hotremove.scenario import loads
from hotremove.sweep.results import ResultsFile

VERSIONS = ["6.1", "6.12"]


@pytest.mark.parametrize("seed", [0, 1, 2, 99, 2**31])
def test_generator_is_deterministic_and_every_case_is_accepted(seed: int) -> None:
    """Case i of seed S is the same scenario every time (and alone or among others); each
    one passes `scenario check` (read back from the TOML the shrinker writes) and can be
    mirrored by a guest of every kernel asked for, and is small."""
    drawn = cases(seed, 12, VERSIONS)
    assert drawn == cases(seed, 12, VERSIONS)
    assert generate(seed, 7, VERSIONS) == drawn[7]
    assert len({json.dumps(c.data, sort_keys=True) for c in drawn}) == len(drawn)
    for case in drawn:
        scn = loads(dumps(case.data), source=case.name)
        assert scn == case.scenario()
        for version in VERSIONS:
            check_mirrorable(scn, version)
        blocks = scn.remove.blocks
        assert 1 <= len(blocks) <= DIMM_BLOCKS and len(set(blocks)) == len(blocks)
        assert all(0 <= b < DIMM_BLOCKS for b in blocks)
        assert sum(fs.files * fs.file_size for fs in scn.filesystem) <= 3 * MAX_CACHE // 2
        assert scn.workload.placement == "fill" and scn.workload.cached == 1


def test_generator_draws_every_installed_type_and_data_mode() -> None:
    """Over a few dozen cases every installed type appears, and ext4's three data modes."""
    from hotremove.fs.registry import installed_types

    drawn = cases(3, 60, VERSIONS)
    seen = {fs["type"] for c in drawn for fs in c.data["filesystem"]}
    assert seen == set(installed_types())
    modes = {
        o
        for c in drawn
        for fs in c.data["filesystem"]
        if fs["type"] == "ext4"
        for o in fs["options"]
    }
    assert {"data=journal", "data=writeback"} <= modes


JOURNAL_AMONG_OTHERS = {
    "memory": {"size": "512MiB", "block_size": "128MiB"},
    "filesystem": [
        {
            "name": "a",
            "type": "ext2",
            "block_size": 1024,
            "size": "16MiB",
            "files": 8,
            "file_size": "16KiB",
            "options": [],
        },
        {
            "name": "j",
            "type": "ext4",
            "block_size": 1024,
            "size": "32MiB",
            "files": 8,
            "file_size": "16KiB",
            "options": ["data=journal"],
        },
        {
            "name": "o",
            "type": "ext4",
            "block_size": 4096,
            "size": "32MiB",
            "files": 6,
            "file_size": "32KiB",
            "options": ["data=ordered"],
        },
    ],
    "workload": {"seed": 5, "dirty": 0.4, "dirty_buffers": "partial", "placement": "fill"},
    "remove": {"blocks": [0, 1], "order": "ascending", "timeout": 5, "start": 2},
    "kernel": {"dirty_writeback_centisecs": 0, "dirty_expire_centisecs": 360000},
}


def _written(data: dict, version: str) -> int:
    from hotremove.scenario import validate

    return int(simulate(validate(data), version)["written_back"])


def test_shrinker_keeps_a_real_disagreement_between_two_kernels() -> None:
    """A disagreement the model really has, without a guest: Linux 6.1 writes ext4
    data=journal pages back before moving them (no migrate_folio: the fallback), 6.12 does
    not (buffer_migrate_folio_norefs gives up on jbd2's references). The shrinker must drop
    what does not matter and keep the journalled filesystem, still disagreeing."""
    assert _written(JOURNAL_AMONG_OTHERS, "6.1") != _written(JOURNAL_AMONG_OTHERS, "6.12")

    def still_disagrees(candidates):
        return [_written(d, "6.1") != _written(d, "6.12") for d in candidates]

    small, steps = shrink(JOURNAL_AMONG_OTHERS, still_disagrees, versions=VERSIONS, rounds=5)
    assert steps and "drop a" in steps and "drop o" in steps
    assert [fs["name"] for fs in small["filesystem"]] == ["j"]
    assert small["filesystem"][0]["options"] == ["data=journal"]
    assert _written(small, "6.1") != _written(small, "6.12")


def test_reductions_are_each_one_step_smaller() -> None:
    for what, data in reductions(JOURNAL_AMONG_OTHERS):
        assert data != JOURNAL_AMONG_OTHERS, what
    assert (
        reductions({**JOURNAL_AMONG_OTHERS, "filesystem": []}) is not None
    )  # no filesystem: only the other reductions


def _row(case: int, kernel: str, status: str = "agree") -> dict:
    return {
        "case": case,
        "seed": 1,
        "kernel": kernel,
        "status": status,
        "types": json.dumps(["ext4"]),
        "modes": json.dumps(["journal"]),
        "failing": "[]",
        "error": "",
        "guest_seconds": 10.0,
        "finished": 1.0,
    }


def test_results_file_resumes_after_an_interruption(tmp_path: Path) -> None:
    """Rows written survive; a row torn by a kill is dropped and its case runs again; the
    summary counts a case under its kernel, type and data mode."""
    path = tmp_path / "results.csv"
    first = ResultsFile(path, res.COLUMNS)
    assert first.open(resume=True, overwrite=False) == []
    first.append(_row(0, "6.1"))
    first.append(_row(0, "6.12", "disagree"))
    first.close()
    with path.open("ab") as f:
        f.write(b"1,1,6.1,agree,[")  # the kill came in the middle of a write
    again = ResultsFile(path, res.COLUMNS)
    rows = again.open(resume=True, overwrite=False)
    again.append(_row(1, "6.1"))
    again.close()
    assert res.done(rows) == {(0, "6.1"), (0, "6.12")}
    _, all_rows = ResultsFile.read(path, res.COLUMNS)
    assert res.done(all_rows) == {(0, "6.1"), (0, "6.12"), (1, "6.1")}
    table = {(r["kernel"], r["type"], r["mode"]): r for r in res.summary(all_rows)}
    assert table[("6.1", "ext4", "journal")]["agreement"] == 1.0
    assert table[("6.12", "ext4", "journal")]["disagree"] == 1


def test_console_is_cut_per_case() -> None:
    text = (
        "RK boot\nRK case_begin id=0\nRK a x=1\nRK case_end id=0 rc=0\nRK case_begin id=2\nRK b\n"
    )
    pieces = _segments(text, 3)
    assert "RK a x=1" in pieces[0] and pieces[1] == "" and pieces[2] == "RK b"
    assert "online_movable" in WRAPPER and "drop_caches" in WRAPPER


@pytest.mark.realkernel
def test_fuzz_two_cases_in_one_boot(tmp_path: Path) -> None:
    """Two generated cases on Linux 6.1 in one guest boot, both judged (not errors), written
    to the results file; a second run resumes and runs nothing."""
    from hotremove.realkernel.fuzz.driver import FuzzOptions, run_fuzz

    opts = FuzzOptions(
        versions=["6.1"],
        count=2,
        seed=35,
        out=tmp_path,
        per_guest=2,
        shrink_rounds=0,
    )
    result = run_fuzz(opts)
    assert result.new == 2
    assert [r["status"] for r in result.rows] != ["error", "error"]
    assert all(r["status"] in ("agree", "disagree") for r in result.rows), result.rows
    again = run_fuzz(opts)
    assert again.new == 0 and len(again.rows) == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["totals"]["6.1"]["cases"] == 2
