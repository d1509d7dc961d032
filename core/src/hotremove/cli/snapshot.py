"""``hotremove snapshot`` and ``hotremove plan``: real machines, planned from their page flags.

Two click commands, registered on the ``hotremove`` group by :mod:`hotremove.cli`:

* ``snapshot [-o FILE]`` reads /proc/kpageflags, /proc/kpagecount, the memory blocks in
  /sys/devices/system/memory and /proc/mounts into one ``.npz`` (read only, root only);
* ``plan SNAPSHOT`` ranks every memory block, cheapest to offline first, with the reason for
  every block that cannot go; ``--json`` prints one object, ``--plot FILE.png`` draws them.

Errors are one line ``hotremove: error: ...`` on stderr and exit status 2, also when the
commands run on their own (tests): :class:`hotremove.cli.base.Command`.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hotremove.cli.base import Command
from hotremove.cli.output import emit_json, print_table, print_text, stdout_console, wide_option
from hotremove.cli.settings import (
    begin,
    check_strategy,
    device_option,
    kernel_option,
    shared_options,
)
from hotremove.fileio import check_output, check_png
from hotremove.kernels import DEFAULT_KERNEL, VERSIONS, get_kernel
from hotremove.model.migrate_mode import DEFAULT_POLICY
from hotremove.plugins import load_plugins
from hotremove.realmachine.classes import CLASSES, unit_name
from hotremove.realmachine.plan import Plan, resolve_fs
from hotremove.realmachine.plan import plan as make_plan
from hotremove.realmachine.plot import plot
from hotremove.realmachine.remedy import advise
from hotremove.realmachine.removal import plan_removal
from hotremove.realmachine.snapshot import SnapshotError, load, take
from hotremove.sim.memguard import check_plan_memory
from hotremove.units import format_seconds, format_size


def _size(n: int) -> str:
    return format_size(n, sep=" ")


# --------------------------------------------------------------------------- snapshot


@click.command("snapshot", cls=Command)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Snapshot file to write (default: snapshot-<time>.npz in the current directory).",
)
@click.option("--json", "json_out", is_flag=True, help="Print a summary as one JSON object.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--proc", default="/proc", hidden=True, type=click.Path(path_type=Path))
@click.option("--sysfs", default="/sys", hidden=True, type=click.Path(path_type=Path))
@shared_options
@click.pass_context
def snapshot_command(
    ctx: click.Context,
    output: Path | None,
    json_out: bool,
    force: bool,
    proc: Path,
    sysfs: Path,
) -> None:
    """Snapshot this machine's page frames for `hotremove plan` (root only, read only).

    Reads /proc/kpageflags and /proc/kpagecount (in bounded chunks), the memory blocks in
    /sys/devices/system/memory and /proc/mounts into one compressed .npz file.
    """
    settings = begin(ctx)
    start = time.perf_counter()
    path = output or Path(f"snapshot-{time.strftime('%Y%m%d-%H%M%S')}.npz")
    check_output(path, label="--output", force=force)  # before /proc is read: fail early
    snap = take(proc, sysfs)
    snap.save(path, force=force, label="--output")
    wall = time.perf_counter() - start
    root = snap.root
    summary = {
        "file": str(path),
        "bytes": path.stat().st_size,
        "kernel": snap.kernel,
        "taken": snap.taken,
        "blocks": len(snap.blocks),
        "block_size": snap.block_size,
        "pages": snap.nr_pages,
        "root": {"device": root.device, "fstype": root.fstype} if root else None,
        "wall_seconds": round(wall, 3),
    }
    if json_out:
        emit_json(summary)
        return
    if settings.quiet:
        return
    fs = f", root {root.fstype} on {root.device}" if root else ""
    click.echo(
        f"wrote {path} ({_size(summary['bytes'])}): {len(snap.blocks)} memory blocks of "
        f"{_size(snap.block_size)} ({_size(snap.nr_pages * 4096)}), kernel {snap.kernel}{fs}, "
        f"in {wall:.2f} s"
    )


# --------------------------------------------------------------------------- plan


@click.command("plan", cls=Command)
@click.argument("snapshot_file", metavar="SNAPSHOT", type=click.Path(path_type=Path))
@click.option(
    "--fs",
    "fs_type",
    metavar="TYPE",
    help="Filesystem that owns the page cache: a type an installed plugin registers "
    "(`hotremove plugins`) (default: the snapshot's root filesystem, whatever its type).",
)
@click.option(
    "--fs-options",
    metavar="OPTS",
    help="Its mount options, comma separated (those its type knows); default: the root "
    "filesystem's when --fs is its type.",
)
@device_option(default="nvme", show_default=True, help="Device preset for the simulated time.")
@click.option(
    "--strategy",
    "policy",
    default=DEFAULT_POLICY,
    show_default=True,
    metavar="auto|writeback|NAME",
    help="Strategy policy the plugins are asked with.",
)
@click.option(
    "--flagless",
    type=click.Choice(["free", "unmovable"]),
    default="free",
    show_default=True,
    help="Pages with no flags outside buddy blocks: free memory, or kernel allocations.",
)
@click.option(
    "--journal-clean",
    type=click.Choice(["free", "held"]),
    default="free",
    show_default=True,
    help="data=journal: clean page cache with buffers is free to move (a warning says it may "
    "not be), or held by jbd2 where the kernel cannot move journal-held buffers (6.12).",
)
@kernel_option(
    f"The kernel whose rules the prediction uses ({', '.join(VERSIONS)}; default {DEFAULT_KERNEL})."
)
@click.option(
    "--remove",
    "remove",
    metavar="N[,N|N-M...]",
    help="Blocks to remove together: the plan finds the order that moves the fewest pages "
    "(default: every ZONE_MOVABLE block that can go).",
)
@click.option("--json", "json_out", is_flag=True, help="Print the plan as one JSON object.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Draw one cell per memory block into this PNG.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the --plot file if it exists; plan even when the snapshot needs more "
    "memory than this machine has available.",
)
@wide_option
@shared_options
@click.pass_context
def plan_command(
    ctx: click.Context,
    snapshot_file: Path,
    fs_type: str | None,
    fs_options: str | None,
    device: str,
    policy: str,
    flagless: str,
    journal_clean: str,
    kernel: str | None,
    remove: str | None,
    json_out: bool,
    plot_path: Path | None,
    force: bool,
    wide: bool,
) -> None:
    """Rank the memory blocks of SNAPSHOT, cheapest to offline first.

    Every frame is classified from its page flags; the installed plugins' strategies for the
    page cache's filesystem decide, page kind by page kind, whether pages move by rebinding
    their buffer_heads, by writeback or by a plain copy, and what that costs. Blocks that
    cannot go are listed last, with the reason. For several blocks removed together (--remove,
    or the ZONE_MOVABLE ones), the order to offline them in that moves the fewest pages.
    """
    settings = begin(ctx)
    start = time.perf_counter()
    if plot_path is not None:
        check_png(plot_path, label="--plot", force=force)  # before the work it would draw
    snap = load(snapshot_file, check_memory=None if force else check_plan_memory)
    fs = resolve_fs(snap, fs_type, fs_options)
    plugins = load_plugins()
    check_strategy(policy, plugins, option="--strategy")
    p = make_plan(
        snap,
        plugins.hooks,
        fs=fs,
        device=device,
        policy=policy,
        flagless=flagless,
        kernel=get_kernel(kernel or DEFAULT_KERNEL),
        journal_clean=journal_clean,
    )
    advise(p, plugins.hooks)
    p.order = plan_removal(p, parse_blocks(remove) if remove is not None else None)
    if plot_path is not None:
        plot(p, plot_path, force=force)
    wall = time.perf_counter() - start
    if json_out:
        out = p.as_dict()
        out["wall_seconds"] = round(wall, 3)
        if plot_path is not None:
            out["plot"] = str(plot_path)
        emit_json(out)
        return
    if settings.quiet:
        return
    console = stdout_console()
    print_plan(p, console, wide=wide)
    if plot_path is not None:
        print_text(console, Text(f"picture: {plot_path}"))
    print_text(console, Text(f"planned in {wall:.2f} s", style="dim"))


def print_plan(p: Plan, console: Console, *, wide: bool = False) -> None:
    """The header (what decides), the ranked table, and a footer on the heuristics."""
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for name, justify in (
        ("#", "right"),
        ("block", "right"),
        ("zone", "left"),
        ("free", "right"),
        ("file", "right"),
        ("dirty", "right"),
        ("anon", "right"),
        ("huge", "right"),
        ("wb/mlock", "right"),
        ("unmov.", "right"),
        ("rebind", "right"),
        ("copy", "right"),
        ("write", "right"),
        ("I/O", "right"),
        ("time", "right"),
        ("verdict", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for b in p.blocks:
        c = b.classes
        free = c.get("free", 0) + (c.get("flagless", 0) if p.flagless == "free" else 0)
        file = c.get("file_clean_nobh", 0) + c.get("file_buffers", 0) + c.get("file_dirty", 0)
        blocked = sum(b.blockers.values())
        ok = b.offlinable
        table.add_row(
            str(b.rank),
            str(b.index),
            b.zone,
            _n(free),
            _n(file),
            _n(c.get("file_dirty", 0)),
            _n(c.get("anon", 0)),
            _n(c.get("huge", 0)),
            _n(c.get("writeback", 0) + c.get("mlocked", 0)),
            _n(blocked),
            _n(b.rebound) if ok else "",
            _n(b.copied) if ok else "",
            _n(b.written_back) if ok else "",
            _n(b.write_requests + b.journal_requests) if ok else "",
            format_seconds(b.simulated_seconds, zero="0") if ok else "",
            Text("ok", style="green") if ok else Text("; ".join(b.reasons), style="red"),
        )
    snap = p.snapshot
    nok = sum(b.offlinable for b in p.blocks)
    say = functools.partial(print_text, console)
    say(
        Text(
            f"{len(p.blocks)} memory blocks of {_size(snap.block_size)} "
            f"({snap.source} snapshot, kernel {snap.kernel or '?'}, {snap.taken or '?'}): "
            f"{nok} can be offlined",
            style="bold",
        )
    )
    say(
        Text(
            f"  page cache   {p.fs.label}: {p.a_ops} → {p.strategy} (plugin {p.plugin}, "
            f"{'rebinds buffer_heads, no I/O' if p.rebinds else 'no rebinding'})"
        )
    )
    say(Text(f"  device       {p.device}    strategy policy {p.policy}"))
    say(Text(f"  kernel       {get_kernel(p.kernel).title}"))
    costs = ", ".join(
        f"{unit_name(c)}: "
        + (
            f"fails ({u.reason})"
            if u.failed
            else "rebind"
            if u.rebound
            else f"write {u.write_requests}+copy"
            if u.written_back
            else "copy"
        )
        for c, u in sorted(p.probes.items())
    )
    if costs:
        say(Text(f"  per page     {costs}"))
    print_table(console, table, wide=wide, keys=2)
    for b in sorted(p.blocks, key=lambda b: b.index):
        if b.remedy is None and not b.warnings:
            continue
        line = f"  block {b.index}: "
        for warning in b.warnings:
            say(Text(line + warning, style="yellow"))
        r = b.remedy
        if r is not None:
            where = f" {' '.join(r['mounts'])}" if r.get("mounts") else ""
            after = "can go" if r["offlinable"] else "still cannot go"
            say(Text(f"{line}remedy {r['action']}{where} ({r['why']}) → {after}", style="cyan"))
    flagless = p.totals.get("flagless", 0)
    if flagless:
        memfree = snap.meminfo.get("MemFree")
        free = p.totals.get("free", 0)
        known = f"; MemFree says {memfree}" if memfree is not None else ""
        say(
            Text(
                f"{flagless} pages carry no flags and no mapping; counted as "
                f"{'free' if p.flagless == 'free' else 'unmovable'} (--flagless). "
                f"buddy + flagless = {free + flagless} pages{known}.",
                style="dim",
            )
        )
    print_order(p, console)
    legend = ", ".join(f"{name}: {desc}" for name, desc, _ in CLASSES[:9])
    say(Text(f"classes: {legend}", style="dim"))


def parse_blocks(text: str) -> list[int]:
    """``32,33`` or ``32-35`` (or both) → block numbers; a one-line error otherwise."""
    blocks: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise SnapshotError(f"--remove: {part!r} is not a block number or range") from None
        if first > last:
            raise SnapshotError(f"--remove: empty range {part!r}")
        blocks.extend(range(first, last + 1))
    if not blocks:
        raise SnapshotError("--remove: name at least one memory block")
    return blocks


def print_order(p: Plan, console: Console) -> None:
    """The removal of several blocks: ascending's cost, descending's, the cheapest order."""
    o = p.order
    if o is None:
        return
    name = o.name
    what = f"{len(o.blocks)} blocks ({', '.join(map(str, o.blocks))}), one offline_pages call each"
    console.print(
        Text(
            f"removing {what}: ascending moves {o.moved['ascending']:,} pages, descending "
            f"{o.moved['descending']:,}",
            style="bold",
        )
    )
    best = ", ".join(map(str, o.best))
    saving = f"{o.saved:,} fewer than ascending" if o.saved else "as ascending"
    console.print(
        Text(f"  fewest: {name} ({best}): {o.moved['best']:,} pages, {saving}", style="cyan")
    )
    if name == "listed":
        console.print(f'  scenario: remove.blocks = [{best}], remove.order = "listed"')
    if o.left_out:
        console.print(
            Text(f"  left out (cannot go): {', '.join(map(str, o.left_out))}", style="yellow")
        )
    if o.short:
        console.print(Text(f"  {o.short:,} pages find no free frame in these zones", style="red"))


def _n(value: int) -> str:
    return f"{value:,}" if value else "·"


__all__ = ["plan_command", "print_plan", "snapshot_command"]
