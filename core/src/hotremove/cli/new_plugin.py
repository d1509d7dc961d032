"""``hotremove new-plugin NAME``: write a ready plugin package from the packaged template.

The package is complete as written: ``pyproject.toml`` with the ``hotremove`` entry point
(and a dependency on the distribution that brings the filesystem type), ``src/hotremove_NAME/
plugin.py`` claiming the chosen a_ops tables with the kernel's strategy for each, a
conformance test module (hotremove's :class:`ConformanceSuite`), a test of its own behaviour
using hotremove's fixtures, and a README. Installed, its tests pass as generated.

Which tables a type's files get and which mount options select them come from the installed
filesystem type itself (``FilesystemType.aops``, surveyed by :mod:`hotremove.fs.tables`), and
each table's strategy from what its pages carry, so the template never disagrees with the
simulator.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import click

from hotremove import __version__
from hotremove.cli.base import Command
from hotremove.cli.settings import begin, shared_options
from hotremove.model.address_space import AddressSpaceOps

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
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


class InstalledTypes(click.Choice):
    """``--fs-type``: the filesystem types the installed plugins register, looked up when the
    option is used (not when the CLI is imported)."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from hotremove.fs.registry import installed_types

        return tuple(sorted(installed_types()))

    @choices.setter
    def choices(self, _value: object) -> None:
        pass


def _ops_of(fs_type: str) -> dict[str, tuple[AddressSpaceOps, tuple[str, ...]]]:
    """The tables ``fs_type``'s own files get (in any modelled kernel: ext3's historic ones
    in 2004, not ext4's that 6.x gives them), with the first option set that selects each."""
    from hotremove.fs.registry import installed_types
    from hotremove.fs.tables import tables_of as survey

    found = installed_types().get(fs_type)
    if found is None:
        return {}
    return {
        name: (t.ops, t.options)
        for name, t in sorted(survey(found).items())
        if t.ops.fs_type == fs_type
    }


def _strategy(ops: AddressSpaceOps) -> str:
    """The ready strategy (hotremove.mm.migrate) for what a table's pages carry."""
    if ops.private == "folio_state":
        return "FILEMAP_MIGRATE_FOLIO"
    if not ops.buffers:
        return "MIGRATE_FOLIO"
    return "BUFFER_MIGRATE_FOLIO_NOREFS" if ops.journalled_data else "BUFFER_MIGRATE_FOLIO"


def tables_of(fs_type: str) -> dict[str, Table]:
    """Every a_ops table of the installed type ``fs_type``, with its kernel strategy and the
    first option set that selects it."""
    return {
        name: Table(name, _strategy(ops), options)
        for name, (ops, options) in _ops_of(fs_type).items()
    }


def default_aops(fs_type: str) -> list[str]:
    """The tables a new plugin claims unless told: all but journalled data (which needs the
    filesystem's journal modelled to be honest)."""
    return [name for name, (ops, _o) in _ops_of(fs_type).items() if not ops.journalled_data]


def type_distribution(fs_type: str) -> str | None:
    """The distribution whose plugin registers ``fs_type`` (what the new package depends
    on to build its images), or None when no installed distribution does."""
    from importlib.metadata import entry_points

    from hotremove.fs.registry import installed_owner

    owner = installed_owner(fs_type)
    if owner is None:
        return None
    ep = next((e for e in entry_points(group="hotremove") if e.name == owner), None)
    return str(ep.dist.metadata["Name"]) if ep is not None and ep.dist is not None else None


def default_fs_type() -> str:
    """``--fs-type`` unless given (``scenarios/defaults.toml``, ``[new-plugin]``)."""
    from hotremove.scenario import named_defaults

    return str(named_defaults()["new-plugin"]["type"])


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


def render(
    name: str, fs_type: str, claimed: list[Table], type_dist: str | None = None
) -> dict[str, str]:
    """The package's files (relative path → text). ``type_dist``: the distribution that
    brings the filesystem type (a dependency of the package)."""
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
        "type_dependency": f', "{type_dist}"' if type_dist else "",
        "type_dist": type_dist or "the plugin that registers the type",
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
    type=InstalledTypes(),
    default=None,
    help="The filesystem whose page cache the plugin migrates: a type an installed plugin "
    "registers (default: see `hotremove plugins`; scenarios/defaults.toml's [new-plugin]).",
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
    ctx: click.Context,
    name: str,
    directory: Path | None,
    fs_type: str | None,
    aops: tuple[str, ...],
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
    fs_type = fs_type or default_fs_type()
    known = tables_of(fs_type)
    if not known:
        raise click.BadParameter(
            f"{fs_type!r}: no installed plugin registers this filesystem type",
            param_hint="--fs-type",
        )
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
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise click.UsageError(f"{target} exists and is not a directory")
    if target.exists() and any(target.iterdir()):
        raise click.UsageError(f"{target} exists and is not empty")
    files = render(name, fs_type, [known[a] for a in claimed_names], type_distribution(fs_type))
    _write_package(target, files)
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
    for line in next_steps(target):
        click.echo(line)


def next_steps(target: Path) -> list[str]:
    """The commands that install and test the new package, exactly as they must be typed
    (a path uv cannot take for a package name: ``./`` in front of a relative one)."""
    where = str(target) if target.is_absolute() else f"./{target}"
    quoted = shlex.quote(where)
    return [
        "next, inside hotremove's uv workspace (in its dev group, beside the built-in "
        "plugins, so `uv sync` keeps it):",
        f"  uv add --dev --editable {quoted}",
        f"  uv run pytest {shlex.quote(where + '/tests')}",
        "  uv run hotremove plugins",
        "or in any other environment (a virtual environment with hotremove installed):",
        f"  pip install -e {shlex.quote(where + '[test]')} && pytest "
        f"{shlex.quote(where + '/tests')} && hotremove plugins",
    ]


def _write_package(target: Path, files: dict[str, str]) -> None:
    """Every file into a temporary directory beside ``target``, renamed into place at the
    end: an interrupted or failed write leaves nothing half made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, target)  # over an empty directory, or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["default_aops", "new_plugin_command", "render", "tables_of"]

if __name__ == "__main__":  # python -m hotremove.cli.new_plugin NAME [...]
    new_plugin_command(sys.argv[1:])
