"""``hotremove new-plugin NAME``: write a ready plugin package from the packaged template.

The package is complete as written: ``pyproject.toml`` with the ``hotremove`` entry point,
``src/hotremove_NAME/plugin.py`` claiming the chosen a_ops tables with the kernel's strategy
for each, a conformance test module (hotremove's :class:`ConformanceSuite`), a test of its own
behaviour using hotremove's fixtures, and a README. Installed, its tests pass as generated.

Which strategy a table gets and which mount options select it come from the core's own tables
(:data:`hotremove.model.aops.AOPS`, :func:`~hotremove.model.aops.select_aops`), so the template
never disagrees with the simulator.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import click

from hotremove import __version__
from hotremove.cli.base import Command
from hotremove.cli.settings import begin, shared_options

FS_TYPES = ("ext2", "ext3", "ext4")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: Mount options tried, in order, to find the ones that give a file each a_ops table.
OPTION_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("nobh",),
    ("nodelalloc",),
    ("data=ordered",),
    ("data=writeback",),
    ("data=journal",),
)
#: template file → where it goes in the package ({name}, {module} filled in).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/{module}/__init__.py",
    "plugin.py.tmpl": "src/{module}/plugin.py",
    "test_conformance.py.tmpl": "tests/test_{name}_conformance.py",
    "test_migration.py.tmpl": "tests/test_{name}_migration.py",
}


@dataclass(frozen=True)
class Table:
    """One a_ops table the new plugin claims."""

    a_ops: str
    strategy: str  # the hotremove.mm.migrate constant
    options: tuple[str, ...]  # mount options that give a file this table


def _data_mode(fs_type: str, options: tuple[str, ...]) -> str | None:
    for option in options:
        if option.startswith("data="):
            return option.removeprefix("data=")
    return "ordered" if fs_type in ("ext3", "ext4") else None


def tables_of(fs_type: str) -> dict[str, Table]:
    """Every a_ops table of ``fs_type`` the core knows, with its kernel strategy and the first
    option set that selects it."""
    from hotremove.model.aops import AOPS, select_aops

    tables: dict[str, Table] = {}
    for options in OPTION_SETS:
        ops = select_aops(fs_type, options, _data_mode(fs_type, options))
        if ops.name in tables or ops.fs_type != fs_type:
            continue
        if not ops.buffers:
            strategy = "MIGRATE_FOLIO"
        elif ops.journalled_data:
            strategy = "BUFFER_MIGRATE_FOLIO_NOREFS"
        else:
            strategy = "BUFFER_MIGRATE_FOLIO"
        tables[ops.name] = Table(ops.name, strategy, options)
    return {name: tables[name] for name in sorted(tables) if name in AOPS}


def default_aops(fs_type: str) -> list[str]:
    """The tables a new plugin claims unless told: all but journalled data (which needs the
    filesystem's journal modelled to be honest)."""
    from hotremove.model.aops import AOPS

    return [name for name in tables_of(fs_type) if not AOPS[name].journalled_data]


def _tuple(items: tuple[str, ...]) -> str:
    """A tuple of strings as ruff format writes it."""
    inner = ", ".join(f'"{item}"' for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _buildable(fs_type: str, options: tuple[str, ...]) -> bool:
    from hotremove.errors import ScenarioError
    from hotremove.testing.helpers import small_scenario

    try:
        small_scenario({"type": fs_type, "options": list(options)})
    except ScenarioError:
        return False
    return True


def render(name: str, fs_type: str, claimed: list[Table]) -> dict[str, str]:
    """The package's files (relative path → text)."""
    module = f"hotremove_{name}"
    demo = next((t for t in claimed if _buildable(fs_type, t.options)), claimed[0])
    machine = {"type": fs_type, "block_size": 1024}
    if demo.options:
        machine["options"] = list(demo.options)  # type: ignore[assignment]
    strategies = sorted({t.strategy for t in claimed})
    values = {
        "name": name,
        "module": module,
        "dist": f"hotremove-{name.replace('_', '-')}",
        "classname": "".join(part.capitalize() for part in name.split("_")),
        "fs_type": fs_type,
        "aops_list": ", ".join(t.a_ops for t in claimed),
        "hotremove_version": ".".join(__version__.split(".")[:2]),
        "imports": ", ".join([*strategies, "MigrateStrategy"]),
        "strategies": "\n".join(f'    "{t.a_ops}": {t.strategy},' for t in claimed),
        "description": "buffer_head rebinding, no I/O"
        if any(t.strategy.startswith("BUFFER") for t in claimed)
        else "plain copy",
        "filesystems": "\n".join(f'            "{t.a_ops}": {_tuple(t.options)},' for t in claimed),
        "table": "\n".join(
            f"| `{t.a_ops}` | {', '.join(t.options) or '(default)'} | `{t.strategy.lower()}` |"
            for t in claimed
        ),
        "machine": repr(machine).replace("'", '"'),
        "demo_aops": demo.a_ops,
    }
    templates = resources.files("hotremove").joinpath("templates", "plugin")
    return {
        target.format(name=name, module=module): Template(
            templates.joinpath(source).read_text(encoding="utf-8")
        ).substitute(values)
        for source, target in FILES.items()
    }


def _installed_claims() -> tuple[set[str], dict[str, str]]:
    """Entry-point names installed, and a_ops → plugin that already claims it."""
    from hotremove.plugins import load_plugins

    plugins = load_plugins(autoload=True, allow=None)
    return {p.name for p in plugins.report}, dict(plugins.aops_owner)


@click.command("new-plugin", cls=Command)
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write the package (default: ./hotremove-NAME). Must be new or empty.",
)
@click.option(
    "--fs-type",
    type=click.Choice(FS_TYPES),
    default="ext4",
    show_default=True,
    help="The filesystem whose page cache the plugin migrates.",
)
@click.option(
    "--aops",
    "aops",
    multiple=True,
    metavar="TABLE",
    help="An a_ops table to claim (repeatable; default: the fs type's tables but journalled "
    "data, e.g. ext4_aops and ext4_da_aops).",
)
@shared_options
@click.pass_context
def new_plugin_command(
    ctx: click.Context, name: str, directory: Path | None, fs_type: str, aops: tuple[str, ...]
) -> None:
    """Write a ready plugin package NAME: pyproject.toml with the entry point, the plugin
    module, a conformance test module and a README. Install it and run its tests."""
    settings = begin(ctx)
    if not NAME_RE.match(name):
        raise click.BadParameter(
            f"{name!r}: use lowercase letters, digits and underscores, starting with a letter "
            "(it becomes the entry point, hotremove_NAME and hotremove-NAME)",
            param_hint="NAME",
        )
    known = tables_of(fs_type)
    claimed_names = list(dict.fromkeys(aops)) or default_aops(fs_type)
    unknown = [a for a in claimed_names if a not in known]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: not an {fs_type} table (known: {', '.join(known)})",
            param_hint="--aops",
        )
    installed, owners = _installed_claims()
    if name in installed:
        raise click.BadParameter(
            f"an installed plugin is already called {name!r}: choose another name",
            param_hint="NAME",
        )
    target = directory or Path(f"hotremove-{name.replace('_', '-')}")
    if target.exists() and any(target.iterdir()):
        raise click.UsageError(f"{target} exists and is not empty")
    files = render(name, fs_type, [known[a] for a in claimed_names])
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for a_ops in claimed_names:
        if a_ops in owners:
            click.echo(
                f"warning: {a_ops} is already claimed by the installed plugin {owners[a_ops]!r}; "
                "only one plugin may claim a table, so install one or the other",
                err=True,
            )
    if settings.quiet:
        return
    click.echo(f"created {target}/ (plugin {name!r} for {fs_type}: {', '.join(claimed_names)})")
    for rel in files:
        click.echo(f"  {rel}")
    click.echo("next, inside hotremove's uv workspace (a dependency, so `uv sync` keeps it):")
    click.echo(f"  uv add --editable {target}")
    click.echo(f"  uv run pytest {target}/tests")
    click.echo("  uv run hotremove plugins")
    click.echo("or in any other environment:")
    click.echo(f"  pip install -e '{target}[test]' && pytest {target}/tests && hotremove plugins")


__all__ = ["default_aops", "new_plugin_command", "render", "tables_of"]

if __name__ == "__main__":  # python -m hotremove.cli.new_plugin NAME [...]
    new_plugin_command(sys.argv[1:])
