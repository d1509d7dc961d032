"""The tables ``hotremove kernel run/diff`` print: the guest's figures per block, and the
simulator against the guest metric by metric."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from hotremove.realkernel.report import GuestReport


def render(report: GuestReport) -> Table:
    """The guest's figures for a terminal."""
    table = Table(
        title=f"Linux {report.kernel.get('release', '?')} ({report.accel}): offline blocks "
        f"{report.blocks} of the DIMM (memory{','.join(map(str, report.dimm_blocks))})"
    )
    for column in ("block", "memoryN", "result", "s", "migrated", "failed", "written"):
        table.add_column(column, justify="right" if column not in ("result",) else "left")
    for b in report.per_block:
        table.add_row(
            str(b.sim_block),
            str(b.memory_block),
            Text("offlined", style="green") if b.offlined else Text(f"-{b.error}", style="red"),
            f"{b.seconds:.2f}",
            str(b.migrated),
            str(b.failed),
            str(b.written_back),
        )
    v = report.verify
    table.caption = (
        f"{report.pages_in_region} pages in region ({report.file_pages_in_region} page cache, "
        f"{report.dirty_pages_in_region} dirty); nr_dirty {report.dirty_before} → "
        f"{report.dirty_after}; files {'verified' if v.get('ok') else 'NOT verified'} "
        f"({v.get('files_checked')} checked); wall {report.wall_seconds:.0f} s"
    )
    return table


def render_rows(version: str, report: GuestReport, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"simulator vs Linux {report.kernel.get('release', version)}")
    for column in ("metric", "simulated", "real", "tolerance", "agree"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["metric"],
            str(row["simulated"]),
            str(row["real"]),
            row["tolerance"],
            Text("yes", style="green") if row["agree"] else Text("NO", style="bold red"),
        )
    if report.not_comparable:
        table.caption = "not comparable: " + "; ".join(report.not_comparable)
    return table
