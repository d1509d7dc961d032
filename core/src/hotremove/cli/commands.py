"""The ``hotremove`` command: demo | run | compare | plugins | scenario.

Contract (DESIGN §7, scripts rely on it):

* ``--json`` prints exactly one JSON object on stdout, at the very end; logs and progress go to
  stderr only.
* Exit status 0 = offlined and verified, 1 = the offline or the verification failed, 2 = bad
  input (one line ``hotremove: error: <message>`` on stderr, never a traceback), 130 = Ctrl-C.
* Logging is configured here and only here (:mod:`hotremove.log`).

Options shared by every command (``--log-level``, ``--log-format``, ``--quiet``,
``--progress/--no-progress``) are accepted before or after the command name.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import click
from rich.table import Table
from rich.text import Text

from hotremove import __version__
from hotremove import scenario as scenario_mod
from hotremove.cli.compare import compare, ratio
from hotremove.cli.display import describe
from hotremove.cli.execute import (
    _apply_overrides,
    _failure_line,
    _keep_dir,
    _plugins,
    _run_and_show,
    run_options,
)
from hotremove.cli.settings import (
    PROG,
    _begin,
    _emit_json,
    _stdout,
    shared_options,
)
from hotremove.errors import HotremoveError
from hotremove.plugins import load_plugins
from hotremove.report import print_report
from hotremove.runner import check_policy
from hotremove.scenario import Scenario

# --------------------------------------------------------------------------- commands


class _Group(click.Group):
    """The top-level group; commands that live in their own module load on first use."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "bench": ("hotremove.cli.bench", "bench_command"),
        "explore": ("hotremove.cli.explore", "explore"),
        "new-plugin": ("hotremove.cli.new_plugin", "new_plugin_command"),
        "plan": ("hotremove.cli.snapshot", "plan_command"),
        "snapshot": ("hotremove.cli.snapshot", "snapshot_command"),
        "sweep": ("hotremove.cli.sweep", "sweep_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    name=PROG,
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@shared_options
def cli() -> None:
    """Simulate Linux memory hot-removal on real ext2/ext3/ext4 images.

    Page-cache pages in the memory blocks being offlined are migrated by rebinding their
    buffer_heads (no I/O) or, where no plugin can, by writing dirty pages back first.

    \b
    Exit status: 0 offlined and verified, 1 offline or verification failed,
    2 bad input, 130 interrupted.
    """


def _builtin(name: str) -> str:
    return resources.files("hotremove").joinpath("scenarios", name).read_text(encoding="utf-8")


def demo_scenario() -> Scenario:
    return scenario_mod.loads(_builtin("demo.toml"), source="demo.toml")


@cli.command()
@run_options
@shared_options
@click.pass_context
def demo(
    ctx: click.Context,
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    seed: int | None,
    device: str | None,
    keep_images: Path | None,
    checks_mode: str | None,
    faults: tuple[str, ...],
) -> int:
    """Run the built-in demo: ext2, ext3 (ordered and journal), ext4 and anonymous pages
    spread over a 512 MiB machine; offline memory blocks 2 and 5.

    See the scenario with `hotremove scenario --demo`.
    """
    scn = _apply_overrides(
        demo_scenario(), strategy=strategy, mode=mode, seed=seed, device=device, faults=faults
    )
    header = "hotremove demo: offline two memory blocks full of page cache from real images"
    return _run_and_show(
        ctx,
        scn,
        "demo",
        json_out=json_out,
        keep_images=keep_images,
        checks_mode=checks_mode,
        header=header,
        footer="rebinding vs forced writeback: "
        "hotremove scenario --demo > demo.toml && hotremove compare demo.toml",
    )


@cli.command()
@click.argument(
    "scenario_file", metavar="SCENARIO.toml", required=False, type=click.Path(path_type=Path)
)
@run_options
@click.option(
    "--snapshot",
    "snapshot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instead of a scenario: rebuild real memory blocks from `hotremove snapshot`.",
)
@click.option("--blocks", metavar="N[,N...]", help="With --snapshot: the memory blocks to remove.")
@click.option("--fs", "fs_type", metavar="TYPE", help="With --snapshot: page-cache filesystem.")
@click.option("--fs-options", metavar="OPTS", help="With --snapshot: its options (comma list).")
@click.option(
    "--flagless",
    type=click.Choice(["free", "unmovable"]),
    default="free",
    help="With --snapshot: how to read pages that carry no flags (as `plan` does).",
)
@shared_options
@click.pass_context
def run(
    ctx: click.Context,
    scenario_file: Path | None,
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    seed: int | None,
    device: str | None,
    keep_images: Path | None,
    checks_mode: str | None,
    faults: tuple[str, ...],
    snapshot_file: Path | None,
    blocks: str | None,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """Run one scenario: build the machine, offline the blocks, verify, report.

    Command-line options override the scenario file. With --snapshot SNAPSHOT --blocks N the
    machine is rebuilt from real memory blocks of a snapshot instead (what `plan` predicted).
    """
    if snapshot_file is not None:
        if scenario_file is not None:
            raise HotremoveError("give a scenario file or --snapshot, not both")
        return _run_snapshot(
            ctx,
            snapshot_file,
            blocks,
            json_out=json_out,
            strategy=strategy,
            mode=mode,
            device=device,
            keep_images=keep_images,
            fs_type=fs_type,
            fs_options=fs_options,
            flagless=flagless,
        )
    if scenario_file is None:
        raise HotremoveError("missing SCENARIO.toml (or --snapshot SNAPSHOT --blocks N)")
    scn = _apply_overrides(
        scenario_mod.load(scenario_file),
        strategy=strategy,
        mode=mode,
        seed=seed,
        device=device,
        faults=faults,
    )
    return _run_and_show(
        ctx,
        scn,
        scenario_file.stem,
        json_out=json_out,
        keep_images=keep_images,
        checks_mode=checks_mode,
    )


def _parse_blocks(blocks: str | None) -> list[int]:
    if not blocks:
        raise HotremoveError("--blocks: name the snapshot's memory blocks to remove (e.g. 12)")
    try:
        return [int(b) for b in blocks.split(",") if b.strip()]
    except ValueError:
        raise HotremoveError(f"--blocks: not a list of block numbers: {blocks!r}") from None


def _run_snapshot(
    ctx: click.Context,
    snapshot_file: Path,
    blocks: str | None,
    *,
    json_out: bool,
    strategy: str | None,
    mode: str | None,
    device: str | None,
    keep_images: Path | None,
    fs_type: str | None,
    fs_options: str | None,
    flagless: str,
) -> int:
    """``run --snapshot``: the measurement a plan's prediction is checked against."""
    from hotremove.realmachine.plan import resolve_fs
    from hotremove.realmachine.run import run_snapshot
    from hotremove.realmachine.snapshot import load as load_snapshot

    settings = _begin(ctx)
    plugins = _plugins(settings)
    check_policy(strategy or "auto", plugins)
    snap = load_snapshot(snapshot_file)
    report = run_snapshot(
        snap,
        _parse_blocks(blocks),
        plugins=plugins,
        workdir=_keep_dir(keep_images),
        fs=resolve_fs(snap, fs_type, fs_options),
        device=device or "nvme",
        policy=strategy or "auto",
        flagless=flagless,
        mode=mode or "sync",
    )
    if json_out:
        _emit_json(report.as_dict())
    elif not settings.quiet:
        print_report(report, _stdout())
    if not report.ok and not json_out:
        click.echo(f"{PROG}: {_failure_line(report)}", err=True)
    return report.exit_status


@cli.command()
@click.option("--json", "json_out", is_flag=True, help="Print a JSON list.")
@shared_options
@click.pass_context
def plugins(ctx: click.Context, json_out: bool) -> int:
    """Installed plugins: distribution, version, hooks, the a_ops each claims, load errors."""
    settings = _begin(ctx)
    loaded = load_plugins()
    infos = [info.as_dict() for info in loaded.report]
    if json_out:
        _emit_json(infos)
        return 0
    if settings.quiet:
        return 0
    out = _stdout()
    table = Table(title=f"hotremove plugins (entry-point group {PROG!r})")
    for column in ("plugin", "distribution", "filesystems", "a_ops", "hooks (hotremove_*)"):
        table.add_column(column, overflow="fold")
    for info in infos:
        fs = ", ".join(info["fs_types"]) or "—"
        if info["policies"]:
            fs += f"\npolicies: {', '.join(info['policies'])}"
        table.add_row(
            Text(info["name"], style="red" if info["error"] else "bold"),
            f"{info['dist'] or '—'}\n{info['version'] or ''}",
            fs,
            "\n".join(info["aops"]) or "—",
            "\n".join(h.removeprefix("hotremove_") for h in info["hooks"]) or "—",
        )
    out.print(table)
    if not infos:
        out.print("no plugins installed: every run will fail (install hotremove-generic-writeback)")
    for info in infos:
        if info["error"]:
            out.print(Text(f"{info['name']}: not loaded: {info['error']}", style="red"))
    return 0


@cli.group(invoke_without_command=True)
@click.option("--example", is_flag=True, help="Print a commented example scenario (every key).")
@click.option("--demo", "show_demo", is_flag=True, help="Print the demo's scenario.")
@shared_options
@click.pass_context
def scenario(ctx: click.Context, example: bool, show_demo: bool) -> int:
    """Scenario files: print an example (--example) or validate one (check FILE)."""
    if example and show_demo:
        raise click.UsageError("give either --example or --demo", ctx=ctx)
    if ctx.invoked_subcommand is not None:
        if example or show_demo:
            raise click.UsageError(
                f"--{'example' if example else 'demo'} takes no subcommand", ctx=ctx
            )
        return 0
    _begin(ctx)
    if example or show_demo:
        sys.stdout.write(_builtin("example.toml" if example else "demo.toml"))
        return 0
    click.echo(ctx.get_help())
    return 0


@scenario.command()
@click.argument("scenario_file", metavar="FILE", type=click.Path(path_type=Path))
@shared_options
@click.pass_context
def check(ctx: click.Context, scenario_file: Path) -> int:
    """Validate a scenario file: `ok: <summary>` (exit 0) or one error line (exit 2)."""
    settings = _begin(ctx)
    scn = scenario_mod.load(scenario_file)
    if not settings.quiet:
        click.echo(f"ok: {scenario_file}: {describe(scn)}")
    return 0


cli.add_command(compare)


# --------------------------------------------------------------------------- entry point


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {' '.join(message.split())}", err=True)


@contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise


#: click ≥ 8.2 raises this for a bare group; older versions print the help themselves.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status (never raises for user
    errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with _quiet_broken_pipe():
            try:
                with cli.make_context(PROG, args) as ctx:
                    rv = cli.invoke(ctx)
            except click.exceptions.Exit as exc:
                return exc.exit_code
        return rv if isinstance(rv, int) else 0
    except BrokenPipeError:
        return 141
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as exc:  # bare `hotremove`: help, not an error
        ctx = getattr(exc, "ctx", None)
        click.echo(ctx.get_help() if ctx is not None else str(exc))
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _error(exc.format_message() + hint)
        return 2
    except click.ClickException as exc:
        _error(exc.format_message())
        return 2
    except HotremoveError as exc:
        _error(str(exc))
        return 2


def main() -> None:
    """Console-script entry point (``hotremove``)."""
    sys.exit(run_cli())


__all__ = ["cli", "describe", "main", "ratio", "run_cli"]
