"""The run's report: one dataclass, its JSON form (a stable interface, docs/cli.md) and its
rich rendering for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from hotremove import __version__
from hotremove.mm.result import OfflineResult
from hotremove.model.locks import LockViolation
from hotremove.sim.verify import Verdict
from hotremove.units import format_seconds


@dataclass
class Report:
    scenario: str
    seed: int
    device: str
    offline: OfflineResult
    writeback_ios: int
    writeback_bytes: int
    journal_ios: int
    cpu_seconds: float
    io_seconds: float
    verify: Verdict | None
    lock_violations: list[LockViolation] = field(default_factory=list)
    #: data writes during the offline that no strategy issued: journal commits and
    #: checkpoints running while migration waited (``writeback_ios`` counts only the writes
    #: strategies issued to move pages)
    background_ios: int = 0
    #: the user interrupted the run (Ctrl-C): the offline backed off and rolled back
    interrupted: bool = False
    #: pages the flusher wrote back during the offline (periodic writeback, not migration)
    flushed: int = 0
    #: asynchronous writes that failed during the offline, as recorded on each mapping
    #: (AS_EIO: what the file's next fsync reports): {fs, file, errno, blocks}
    write_errors: list[dict[str, Any]] = field(default_factory=list)
    #: the loaded plugins and their distributions' versions (what produced this report)
    plugins: dict[str, str | None] = field(default_factory=dict)
    #: wall time of building the machine (images, page cache) and of verifying it (sync,
    #: the images' checkers, read-back): with the offline's ``wall_seconds``, where a run's
    #: time went
    build_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def simulated_seconds(self) -> float:
        return self.cpu_seconds + self.io_seconds

    @property
    def ok(self) -> bool:
        """Completed, verified, and every check held."""
        return (
            self.offline.offlined
            and self.verify is not None
            and self.verify.ok
            and not self.offline.check_failures
            and not self.lock_violations
        )

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        off = self.offline
        return {
            "hotremove_version": __version__,
            "plugins": self.plugins,
            "scenario": self.scenario,
            "kernel": off.kernel,
            "seed": self.seed,
            "device": self.device,
            "mode": off.mode.value,
            "policy": off.policy,
            "blocks": off.blocks,
            "order": off.order,
            "per_block": [b.as_dict() for b in off.per_block],
            "pages_in_region": off.pages_in_region,
            "isolated_free": off.isolated_free,
            "migrated": off.migrated,
            "rebound": off.rebound,
            "written_back": off.written_back,
            "writeback_ios": self.writeback_ios,
            "writeback_bytes": self.writeback_bytes,
            "journal_ios": self.journal_ios,
            "background_ios": self.background_ios,
            "flushed": self.flushed,
            "write_errors": self.write_errors,
            "failed": off.failed,
            "failed_attempts": off.failed_attempts,
            "spun_rounds": off.spun_rounds,
            "offlined": off.offlined,
            "reason": off.reason,
            "passes": off.passes,
            "rounds": off.rounds,
            "retries": dict(off.retries),
            "simulated_seconds": self.simulated_seconds,
            "cpu_seconds": self.cpu_seconds,
            "io_seconds": self.io_seconds,
            "wall_seconds": off.wall_seconds,
            "build_seconds": self.build_seconds,
            "verify_seconds": self.verify_seconds,
            "strategies": {name: s.plugin for name, s in off.per_aops.items()},
            "per_aops": {
                name: {
                    "plugin": s.plugin,
                    "strategy": s.strategy,
                    "pages": s.pages,
                    "migrated": s.migrated,
                    "rebound": s.rebound,
                    "written_back": s.written_back,
                    "write_requests": s.write_requests,
                    "failed": s.failed,
                }
                for name, s in off.per_aops.items()
            },
            "classes": off.classes,
            "checks": [f.as_dict() for f in off.check_failures],
            "lock_violations": [v.as_dict() for v in self.lock_violations],
            "verify": self.verify.as_dict() if self.verify else None,
            "ok": self.ok,
            "interrupted": self.interrupted,
        }


#: below this many columns the per-a_ops table drops its strategy column (listed under it)
NARROW = 110


def render(report: Report, width: int | None = None) -> Group:
    """Tables and verdict lines for a terminal; ``width`` below :data:`NARROW` (an 80-column
    terminal) stacks the strategies under the table instead of beside the counts."""
    off = report.offline
    narrow = width is not None and width < NARROW
    table = Table(
        title=f"hotremove: offline blocks {off.blocks} (Linux {off.kernel}, {off.mode.value}, "
        f"strategy {off.policy}, {report.device})"
        if off.kernel and off.kernel != "2004"
        else f"hotremove: offline blocks {off.blocks} ({off.kernel or 'kernel'}, "
        f"{off.mode.value}, strategy {off.policy}, {report.device})"
    )
    table.add_column("a_ops", no_wrap=True)
    if not narrow:
        table.add_column("strategy (plugin)", no_wrap=True)
    for column in ("pages", "migrated", "rebound", "written\nback", "write\nI/Os", "failed"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, s in sorted(off.per_aops.items()):
        strategy = [] if narrow else [Text.assemble(s.strategy, "\n", (f"({s.plugin})", "dim"))]
        table.add_row(
            name,
            *strategy,
            str(s.pages),
            str(s.migrated),
            str(s.rebound),
            str(s.written_back),
            str(s.write_requests),
            Text(str(s.failed), style="red" if s.failed else ""),
        )
    outcome = Text()
    outcome.append(
        "offlined" if off.offlined else "NOT offlined (rolled back)",
        style="bold green" if off.offlined else "bold red",
    )
    outcome.append(
        f": {off.pages_in_region} pages in region, {off.isolated_free} free isolated, "
        f"{off.migrated} migrated, {len(off.failed)} failed, {off.passes} "
        + ("pass" if off.passes == 1 else "passes")
    )
    cost = Text(
        f"simulated {format_seconds(report.simulated_seconds)} "
        f"(CPU {format_seconds(report.cpu_seconds)}, "
        f"I/O {format_seconds(report.io_seconds)}; {report.writeback_ios} writeback requests, "
        f"{report.background_ios} background writes, {report.journal_ios} journal log "
        f"requests) — wall {format_seconds(off.wall_seconds)}"
    )
    lines: list[Any] = [table]
    if narrow:
        for name, s in sorted(off.per_aops.items()):
            lines.append(Text.assemble(f"  {name}: ", s.strategy, (f" ({s.plugin})", "dim")))
    lines += [outcome, cost]
    if len(off.blocks) > 1:
        lines.extend(block_lines(off))
    busy = {name: row for name, row in off.classes.items() if name != "free" and row["pages"]}
    if busy:
        lines.append(
            Text(
                "page classes: "
                + ", ".join(
                    f"{name} {row['migrated']}/{row['pages']}" for name, row in busy.items()
                )
                + " moved"
            )
        )
    if off.retries:
        lines.append(
            Text(
                "retries: "
                + ", ".join(f"{reason} ×{n}" for reason, n in sorted(off.retries.items()))
            )
        )
    for failure in off.failed[:10]:
        lines.append(Text(f"  failed pfn {failure['pfn']:#x}: {failure['reason']}", style="red"))
    if len(off.failed) > 10:
        lines.append(Text(f"  … and {len(off.failed) - 10} more", style="red"))
    for check in off.check_failures[:10]:
        lines.append(
            Text(f"  check {check.check} pfn {check.pfn:#x}: {check.message}", style="red")
        )
    for violation in report.lock_violations[:10]:
        lines.append(Text(f"  {violation.message}", style="red"))
    if report.write_errors:
        blocks = sum(len(e["blocks"]) for e in report.write_errors)
        lines.append(
            Text(
                f"write errors: {blocks} block(s) of {len(report.write_errors)} file(s) failed "
                "to write (-EIO, recorded on the mapping: the next fsync reports it)",
                style="red",
            )
        )
    if report.verify is not None:
        v = report.verify
        fsck_ok = all(f["ok"] for f in v.fsck.values())
        verdict = Text()
        verdict.append(
            "verified" if v.ok else "VERIFICATION FAILED",
            style="bold green" if v.ok else "bold red",
        )
        verdict.append(
            f": {checkers(v.fsck)} {'clean' if fsck_ok else 'NOT clean'} on {len(v.fsck)} "
            "image(s), "
            f"{v.files_checked} files byte-equal to the golden model"
            if not v.mismatches and not v.lost_to_eio
            else f": {len(v.mismatches)} mismatches, first {v.mismatches[0]}"
            if v.mismatches
            else f": {sum(len(x['blocks']) for x in v.lost_to_eio)} block(s) of "
            f"{len(v.lost_to_eio)} file(s) never reached the disk (the write errors above); "
            "nothing else differs"
        )
        if v.anon_checked:
            verdict.append(f", {v.anon_checked} anon pages checked")
        lines.append(verdict)
    return Group(*lines)


def block_lines(off: OfflineResult) -> list[Text]:
    """One line per ``offline_pages`` call, in call order (``remove.order``)."""
    lines = [Text(f"per block ({off.order}, one offline_pages call each):")]
    for b in off.per_block:
        line = Text(f"  block {b.block}: ")
        line.append(
            "offlined" if b.offlined else "NOT offlined",
            style="green" if b.offlined else "red",
        )
        line.append(
            f": {b.migrated} migrated, {b.written_back} written back, {b.failed} failed; "
            f"simulated {format_seconds(b.simulated_seconds)}"
        )
        if b.reason:
            line.append(f" — {b.reason}", style="red")
        lines.append(line)
    tried = {b.block for b in off.per_block}
    for block in off.blocks:
        if block not in tried:
            lines.append(Text(f"  block {block}: not tried (interrupted)", style="red"))
    return lines


def print_report(report: Report, console: Console) -> None:
    console.print(render(report, console.width))


def checkers(fsck: dict[str, dict[str, Any]]) -> str:
    """The images' checkers by name (``FilesystemType.checker``), for a verdict line."""
    names = dict.fromkeys(str(f.get("checker", "fsck")) for f in fsck.values())
    return ", ".join(names) or "fsck"


def not_clean(fsck: dict[str, dict[str, Any]]) -> str:
    """``<checker> not clean on home, mail``: the images whose checker found problems (""
    when none did)."""
    bad = {name: f for name, f in fsck.items() if not f.get("ok")}
    return f"{checkers(bad)} not clean on {', '.join(bad)}" if bad else ""
