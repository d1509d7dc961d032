"""The ``hotremove`` group, its small commands (plugins, scenario) and the entry point.

Contract (docs/cli.md; scripts rely on it):

* ``--json`` prints exactly one JSON object on stdout, at the very end; logs and progress go to
  stderr only.
* Exit status 0 = offlined and verified, 1 = the offline or the verification failed, 2 = bad
  input (one line ``hotremove: error: <message>`` on stderr, never a traceback), 130 = Ctrl-C
  (:mod:`hotremove.cli.base`).
* Logging is configured in one place, :func:`hotremove.cli.settings.begin`.

Options shared by every command (``--log-level``, ``--log-format``, ``--quiet``,
``--progress/--no-progress``) are accepted before or after the command name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import click
from rich.table import Table
from rich.text import Text

from hotremove import __version__
from hotremove import scenario as scenario_mod
from hotremove.cli.base import CONTEXT_SETTINGS, PROG, Group, run_command
from hotremove.cli.compare import compare, ratio
from hotremove.cli.display import describe
from hotremove.cli.output import emit_json, print_table, stdout_console
from hotremove.cli.run import builtin_text, demo, run
from hotremove.cli.settings import begin, shared_options
from hotremove.plugins import load_plugins
from hotremove.signals import install_handlers


class _LazyGroup(Group):
    """The top-level group; commands that live in their own module load on first use."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "bench": ("hotremove.cli.bench", "bench_command"),
        "cache": ("hotremove.cli.cache", "cache_group"),
        "explore": ("hotremove.cli.explore", "explore"),
        "kernel": ("hotremove.cli.kernel_fuzz", "kernel_group"),
        "kernels": ("hotremove.cli.kernels", "kernels_command"),
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


@click.group(name=PROG, cls=_LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@shared_options
def cli() -> None:
    """Simulate Linux memory hot-removal on real filesystem images.

    Page-cache pages in the memory blocks being offlined are migrated by rebinding their
    buffer_heads (no I/O) or, where no plugin can, by writing dirty pages back first.

    \b
    Exit status: 0 offlined and verified, 1 offline or verification failed,
    2 bad input, 130 interrupted.
    """


@cli.command()
@click.option(
    "--json",
    "json_out",
    is_flag=True,
    help='One JSON object: {"hotremove_version", "group", "plugins": [...]}.',
)
@shared_options
@click.pass_context
def plugins(ctx: click.Context, json_out: bool) -> int:
    """Installed plugins: distribution, version, hooks, the filesystem types each registers,
    the a_ops each claims, load errors."""
    settings = begin(ctx)
    loaded = load_plugins()
    infos = [info.as_dict() for info in loaded.report]
    if json_out:
        emit_json({"hotremove_version": __version__, "group": PROG, "plugins": infos})
        return 0
    if settings.quiet:
        return 0
    out = stdout_console()
    table = Table(title=f"hotremove plugins (entry-point group {PROG!r})")
    for column in ("plugin", "distribution", "filesystems", "a_ops", "hooks (hotremove_*)"):
        table.add_column(column, no_wrap=True)
    for info in infos:
        # "(type)": the plugin brings the whole filesystem type (images, tables, mount)
        names = dict.fromkeys([*info["types"], *info["fs_types"]])
        fs = "\n".join(f"{n} (type)" if n in info["types"] else n for n in names) or "—"
        if info["policies"]:
            fs += f"\npolicies: {', '.join(info['policies'])}"
        table.add_row(
            Text(info["name"], style="red" if info["error"] else "bold"),
            f"{info['dist'] or '—'}\n{info['version'] or ''}",
            fs,
            "\n".join(info["aops"]) or "—",
            "\n".join(h.removeprefix("hotremove_") for h in info["hooks"]) or "—",
        )
    print_table(out, table, wide=False, keys=1)
    if not infos:
        out.print("no plugins installed: every run will fail (install hotremove-generic-writeback)")
    for info in infos:
        if info["error"]:
            out.print(Text(f"{info['name']}: not loaded: {info['error']}", style="red"))
    return 0


#: ``scenario --example [NAME]``: the example scenarios shipped with hotremove
EXAMPLES = {"every-key": "example.toml", "journal": "journal-lesson.toml"}


@cli.group(invoke_without_command=True)
@click.option(
    "--example",
    "example",
    is_flag=False,
    flag_value="every-key",
    default=None,
    metavar="[NAME]",
    help="Print a commented example scenario: every key (runs to exit 0), or NAME "
    f"({', '.join(n for n in EXAMPLES if n != 'every-key')}: data=journal on 6.12, "
    "not offlined).",
)
@click.option("--demo", "show_demo", is_flag=True, help="Print the demo's scenario.")
@shared_options
@click.pass_context
def scenario(ctx: click.Context, example: str | None, show_demo: bool) -> int:
    """Scenario files: print an example (--example) or validate one (check FILE)."""
    if example is not None and show_demo:
        raise click.UsageError("give either --example or --demo", ctx=ctx)
    if ctx.invoked_subcommand is not None:
        if example is not None or show_demo:
            raise click.UsageError(
                f"--{'example' if example is not None else 'demo'} takes no subcommand", ctx=ctx
            )
        return 0
    begin(ctx)
    if example is not None and example not in EXAMPLES:
        raise click.UsageError(
            f"--example: no example {example[:40]!r} (examples: {', '.join(EXAMPLES)})", ctx=ctx
        )
    if example is not None or show_demo:
        sys.stdout.write(builtin_text(EXAMPLES[example] if example else "demo.toml"))
        return 0
    click.echo(ctx.get_help())
    return 0


@scenario.command()
@click.argument("scenario_file", metavar="FILE", type=click.Path(path_type=Path))
@shared_options
@click.pass_context
def check(ctx: click.Context, scenario_file: Path) -> int:
    """Validate a scenario file: `ok: <summary>` (exit 0) or one error line (exit 2)."""
    settings = begin(ctx)
    scn = scenario_mod.load(scenario_file)
    if not settings.quiet:
        click.echo(f"ok: {scenario_file}: {describe(scn)}")
    return 0


for _command in (compare, demo, run):
    cli.add_command(_command)


# --------------------------------------------------------------------------- entry point


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status (never raises for user
    errors)."""
    return run_command(cli, argv, PROG)


def main() -> None:
    """The ``hotremove`` command run from here (the console script is
    :func:`hotremove.startup.main`, which sets the signals up before this module is even
    imported)."""
    install_handlers()
    sys.exit(run_cli())


__all__ = ["cli", "describe", "main", "ratio", "run_cli"]
