"""The columns of a result row: the grid checks ``plot.y`` against them, rows are made and
read back by them. Data only, so both :mod:`hotremove.sweep.grid` and
:mod:`hotremove.sweep.rows` import it and neither imports the other."""

from __future__ import annotations

#: The report's columns (its JSON keys, flattened) and how to read them back from CSV.
#: Lists and variable-key dicts are JSON; report keys not listed here land in ``extra``.
REPORT_COLUMNS: dict[str, str] = {
    "scenario": "str",
    "seed": "int",
    "device": "str",
    "mode": "str",
    "policy": "str",
    "blocks": "json",
    "pages_in_region": "int",
    "isolated_free": "int",
    "migrated": "int",
    "rebound": "int",
    "written_back": "int",
    "writeback_ios": "int",
    "writeback_bytes": "int",
    "journal_ios": "int",
    "offlined": "bool",
    "passes": "int",
    "rounds": "int",
    "retries": "json",
    "simulated_seconds": "float",
    "cpu_seconds": "float",
    "io_seconds": "float",
    "failed_pages": "int",
    "failed": "json",
    "check_failures": "int",
    "checks": "json",
    "lock_violations": "json",
    "verify_ok": "bool",
    "verify_files_checked": "int",
    "verify_mismatches": "int",
    "verify": "json",
    "strategies": "json",
    "per_aops": "json",
    "ok": "bool",
    "extra": "json",
}
#: Wall-clock columns: they differ from run to run and are not part of a row's identity.
TIMING_COLUMNS: dict[str, str] = {"wall_seconds": "float", "run_seconds": "float", "worker": "str"}
HEAD_COLUMNS: dict[str, str] = {
    "run_id": "str",
    "run_index": "int",
    "status": "str",
    "reason": "str",
}
STATUSES = ("ok", "failed", "error")
#: The results file's format, in every row's ``format`` column: a reader refuses any other.
FORMAT = "hotremove-sweep/1"
#: The last two columns of every row: its format and the checksum of the line before it.
TRAILER_COLUMNS: tuple[str, ...] = ("format", "checksum")
