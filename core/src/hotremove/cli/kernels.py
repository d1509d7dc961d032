"""``hotremove kernels``: the modelled kernel versions, their rules and the ``migrate_folio``
every modelled a_ops gets in each (the installed plugins' answers), each with its source —
the kernel function or table and the release that made it so; and the one per-kernel
summary of a run that ``compare --kernel`` and ``demo`` print side by side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hotremove.cli.base import Command
from hotremove.cli.execute import failure_line
from hotremove.cli.output import emit_json, print_table, print_text, stdout_console
from hotremove.cli.settings import begin, shared_options
from hotremove.fs.fstype import FilesystemType
from hotremove.kernels import DEFAULT_KERNEL, KERNELS, VERSIONS, Kernel, Rule
from hotremove.model.migrate_mode import DEFAULT_POLICY
from hotremove.plugins import PluginSet, load_plugins
from hotremove.sim.report import Report
from hotremove.units import format_seconds

# --------------------------------------------------------------------------- kernels


def strategies(kernel: Kernel, plugins: PluginSet) -> dict[str, dict[str, Any]]:
    """Every table the registered filesystem types' files get (in any modelled kernel) → the
    strategy the installed plugins give it in ``kernel``, asked exactly as the engine asks
    (``migrate_strategy(mapping, policy, kernel)``). ``mounted``: whether a file gets that
    table in this kernel (in ≥ 4.3 ext3 images get ext4's tables, say)."""
    from hotremove.fs.tables import all_tables
    from hotremove.mm.migrate import source_of
    from hotremove.model.address_space import probe_mapping

    types = filesystem_types(plugins)
    here = set(all_tables(types.values(), [kernel]))
    out: dict[str, dict[str, Any]] = {}
    for name, a_ops in sorted(all_tables(types.values()).items()):
        strategy, plugin = plugins.hooks.migrate_strategy(
            probe_mapping(a_ops), DEFAULT_POLICY, kernel
        )
        out[name] = {
            "strategy": strategy.name,
            "plugin": plugin,
            "rebinds": bool(strategy.rebinds),
            "mounted": name in here,
            "source": source_of(strategy),
        }
    return out


def filesystem_types(plugins: PluginSet) -> dict[str, FilesystemType]:
    """The types the plugin set registers and the installed ones, by name."""
    from hotremove.fs.registry import installed_types

    return {**installed_types(), **{n: t for n, (t, _p) in plugins.fs_types.items()}}


def mount_rules(kernel: Kernel, types: Mapping[str, FilesystemType]) -> dict[str, tuple[str, Rule]]:
    """Types whose images another driver mounts in ``kernel`` (their files get that driver's
    tables: ext3's get ext4's from v4.3), as each type's ``aops`` says: type → (the
    driver, its rule)."""
    from hotremove.fs.tables import mounted_by, tables_of

    rules = {}
    for name, tables in mounted_by(types, kernel).items():
        fs_type = types[name]
        driver = ", ".join(sorted({t.ops.fs_type for t in tables_of(fs_type, [kernel]).values()}))
        rules[name] = (
            driver,
            Rule(
                f"{name} images are mounted by {driver} ({', '.join(tables)})",
                fs_type.aops_source or f"the {name} type's aops() ({type(fs_type).__module__})",
            ),
        )
    return rules


def describe_kernels(plugins: PluginSet) -> dict[str, Any]:
    """``hotremove kernels --json``: every modelled version, its rules (the kernel's, then
    one per filesystem type whose images another driver mounts) and its strategies."""
    types = filesystem_types(plugins)
    out: dict[str, Any] = {"default": DEFAULT_KERNEL, "policy": DEFAULT_POLICY, "kernels": {}}
    for version, kernel in KERNELS.items():
        mounts = mount_rules(kernel, types)
        rules = [*kernel.rules, *(rule for _driver, rule in mounts.values())]
        out["kernels"][version] = {
            "version": version,
            "title": kernel.title,
            "rules": [rule.text for rule in rules],
            "rule_sources": [rule.source for rule in rules],
            "drivers": {name: driver for name, (driver, _rule) in mounts.items()},
            "a_ops": strategies(kernel, plugins),
        }
    return out


@click.command("kernels", cls=Command)
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object.")
@shared_options
@click.pass_context
def kernels_command(ctx: click.Context, json_out: bool) -> int:
    """The modelled kernels (2004, 5.10, 6.1, 6.12, 7.2): their rules, and which
    migrate_folio every a_ops gets in each from the installed plugins (policy auto), each
    with its source (kernel function or table, release)."""
    settings = begin(ctx)
    info = describe_kernels(load_plugins())
    if json_out:
        emit_json(info)
        return 0
    if settings.quiet:
        return 0
    out = stdout_console()
    for i, (version, k) in enumerate(info["kernels"].items()):
        if i:
            out.print()
        head = Text(f"{version}", style="bold")
        head.append(f"  {k['title']}")
        if version == info["default"]:
            head.append("  (default)", style="dim")
        out.print(head)
        rules = Table.grid(padding=(0, 1))
        rules.add_column(no_wrap=True)
        rules.add_column()
        for rule, source in zip(k["rules"], k["rule_sources"], strict=True):
            line = Text(rule)
            line.append(f"  [{source}]", style="dim")
            rules.add_row("  •", line)
        out.print(rules)
        table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
        table.add_column("  a_ops", no_wrap=True)
        table.add_column("migrate_folio", no_wrap=True)
        table.add_column("plugin", no_wrap=True)
        table.add_column("source", style="dim")
        for name, s in k["a_ops"].items():
            style = "" if s["mounted"] else "dim"
            table.add_row(
                Text(f"  {name}", style=style),
                Text(s["strategy"], style=style or ("green" if s["rebinds"] else "")),
                Text(s["plugin"], style=style),
                Text(s["source"] or "—"),
            )
        print_table(out, table)
    out.print()
    out.print(
        Text(
            "green: rebinds buffer_heads (no I/O); dim: no file gets this table in this kernel "
            "(another driver mounts its images).",
            style="dim",
        )
    )
    return 0


# --------------------------------------------------------------------------- per-kernel runs

_ERRNO = re.compile(r"\((-E[A-Z]+)\)")


def outcome(report: Mapping[str, Any]) -> str:
    """``offlined`` or ``not offlined (-EINTR)``: the error that decided a failed offline."""
    if report["offlined"]:
        return "offlined"
    match = _ERRNO.search(str(report.get("reason") or ""))
    if match:
        return f"not offlined ({match.group(1)})"
    return "not offlined (gave up)" if "gave up" in str(report.get("reason")) else "not offlined"


@dataclass(frozen=True)
class RunError:
    """A run beside the demo's main one that raised instead of reporting: the demo names it
    in its table (as a sweep's error row does) instead of ending with a traceback."""

    kernel: str
    error: str
    ok: bool = False
    interrupted: bool = False
    exit_status: int = 1


KernelRun = Report | RunError


def why(report: KernelRun) -> str:
    """Why a run did not succeed, in one line ("" when it did): the engine's reason for a
    failed offline, else what failed after it (verification, checks, lock violations)."""
    if isinstance(report, RunError):
        return f"error: {report.error}"
    if report.ok:
        return ""
    off = report.offline
    if not off.offlined and off.reason:
        return str(off.reason)
    return failure_line(report)


SUMMARY_KEYS = (
    "kernel",
    "offlined",
    "ok",
    "migrated",
    "written_back",
    "writeback_ios",
    "flushed",
    "simulated_seconds",
    "failed_attempts",
)


def summary(report: KernelRun) -> dict[str, Any]:
    """One kernel's run in a few numbers (``demo --json``'s ``kernels``); a run that raised
    has ``outcome`` "error", its message as ``reason`` and no numbers."""
    if isinstance(report, RunError):
        out: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
        out.update(kernel=report.kernel, offlined=False, ok=False, outcome="error")
        out.update(reason=why(report), exit_status=report.exit_status)
        return out
    d = report.as_dict()
    out = {key: d[key] for key in SUMMARY_KEYS}
    out["outcome"] = outcome(d)
    out["reason"] = why(report)
    out["exit_status"] = report.exit_status
    return out


def kernels_table(
    title: str | None, reports: Mapping[str, KernelRun], *, detail: bool = False
) -> Table:
    """The same scenario on several kernels, one column each; ``detail`` adds the rows of
    ``compare`` (migrated, flushed pages, failed attempts)."""
    table = Table(title=title)
    table.add_column("")
    for version in reports:
        table.add_column(_label(version), justify="right")
    sums = {v: summary(r) for v, r in reports.items()}

    def row(label: str, cell: Any) -> None:
        table.add_row(label, *(cell(s) if s["outcome"] != "error" else "—" for s in sums.values()))

    table.add_row(
        "outcome",
        *(
            Text(
                s["outcome"],
                style="green" if s["ok"] else ("yellow" if s["offlined"] else "red"),
            )
            for s in sums.values()
        ),
    )
    if detail:
        row("pages migrated", lambda s: str(s["migrated"]))
    row("written back", lambda s: str(s["written_back"]))
    row("write I/Os", lambda s: str(s["writeback_ios"]))
    if detail:
        row("flushed (flusher)", lambda s: str(s["flushed"]))
    row("simulated time", lambda s: format_seconds(s["simulated_seconds"]))
    if detail:
        row("failed attempts", lambda s: f"{s['failed_attempts']:,}")
    return table


def versions_help() -> str:
    """The modelled versions, for option help texts."""
    return ", ".join(VERSIONS)


def _label(version: str) -> str:
    return "2004 seed" if version == "2004" else f"Linux {version}"


def print_kernels(
    out: Console,
    title: str | None,
    reports: Mapping[str, KernelRun],
    *,
    wide: bool | None = None,
    **kw: Any,
) -> None:
    """:func:`kernels_table` (``wide``: as :func:`print_table`), then one line per run that
    did not succeed: why."""
    print_table(out, kernels_table(title, reports, **kw), wide=wide)
    for version, report in reports.items():
        reason = why(report)
        if reason:
            print_text(out, Text(f"  {_label(version)}: {reason}", style="red"))


__all__ = [
    "KernelRun",
    "RunError",
    "describe_kernels",
    "kernels_command",
    "kernels_table",
    "outcome",
    "print_kernels",
    "strategies",
    "summary",
    "why",
]
