"""The command line's options: the ones every command shares (:func:`shared_options`, merged
and applied by :func:`begin`), the ones of the commands that run a scenario
(:func:`run_options`), the one check of a ``--strategy`` (:func:`check_strategy`) and of a
``--kernel`` (:func:`check_kernel`, :func:`kernel_option`, :func:`kernels_option`).

:func:`begin` is the only place logging is configured (:mod:`hotremove.log`): every command
calls it first, under the group or on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import structlog
from click.core import ParameterSource

from hotremove import log as hlog
from hotremove.cli.base import PROG
from hotremove.cli.output import check_columns
from hotremove.cli.params import Digits
from hotremove.errors import HotremoveError, ScenarioError
from hotremove.kernels import VERSIONS, get_kernel
from hotremove.model.cost import PRESETS
from hotremove.model.migrate_mode import MODES
from hotremove.tomltext import TomlError, parse_toml

if TYPE_CHECKING:
    from hotremove.plugins import PluginSet
    from hotremove.scenario import Scenario

log = structlog.get_logger("hotremove.cli")

_META = "hotremove.settings"


# --------------------------------------------------------------------------- shared options


@dataclass
class Settings:
    """Options every command shares, merged from the group and the command."""

    log_level: str = "warning"
    log_format: str = "auto"
    quiet: bool = False
    progress: bool | None = None  # None = automatic


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a shared option given on the command line or through the environment; a value
    typed after the command name wins over one typed before it or set in the environment."""
    if value is None or param.name is None:
        return
    source = ctx.get_parameter_source(param.name)
    if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        return
    settings: dict[str, tuple[Any, bool]] = ctx.meta.setdefault(_META, {})
    explicit = source is ParameterSource.COMMANDLINE
    if explicit or param.name not in settings or not settings[param.name][1]:
        settings[param.name] = (value, explicit)


def _shared(*decls: str, **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*decls, expose_value=False, callback=_remember, **attrs)


_SHARED = (
    _shared(
        "--log-level",
        type=click.Choice(hlog.LEVELS, case_sensitive=False),
        envvar="HOTREMOVE_LOG_LEVEL",
        help="warning (default), info (one event per pass), debug (one per page).",
    ),
    _shared(
        "--log-format",
        type=click.Choice(hlog.FORMATS, case_sensitive=False),
        envvar="HOTREMOVE_LOG_FORMAT",
        help="Logs on stderr: console on a terminal, JSON otherwise (auto).",
    ),
    _shared("-q", "--quiet", is_flag=True, default=None, help="No human output except errors."),
    _shared(
        "--progress/--no-progress",
        default=None,
        help="Progress bar on stderr (default: on a terminal, not with --json or --quiet).",
    ),
)


def shared_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-level``, ``--log-format``, ``-q/--quiet``, ``--progress/--no-progress``: on the
    group and on every command, so that they are accepted before or after its name."""
    for option in reversed(_SHARED):
        f = option(f)
    return f


def begin(ctx: click.Context) -> Settings:
    """Every command starts here: merge the shared options and configure logging."""
    stored = {k: v for k, (v, _) in ctx.meta.get(_META, {}).items()}
    settings = Settings(
        log_level=str(stored.get("log_level", "warning")).lower(),
        log_format=str(stored.get("log_format", "auto")).lower(),
        quiet=bool(stored.get("quiet", False)),
        progress=stored.get("progress"),
    )
    hlog.configure(settings.log_level, settings.log_format)
    check_columns()  # refused before any work, not after it
    return settings


# --------------------------------------------------------------------------- strategy


def check_strategy(policy: str, plugins: PluginSet, *, option: str | None = None) -> None:
    """The command line's one check of a strategy, before any work: ``auto`` or a policy an
    installed plugin registered (:func:`hotremove.sim.runner.check_policy`). ``option`` names the
    flag in the message; without it the message names ``remove.strategy`` (a scenario's)."""
    from hotremove.sim.runner import check_policy

    try:
        check_policy(policy, plugins)
    except ScenarioError as exc:
        if option is None:
            raise
        _, _, why = str(exc).partition(": ")
        raise ScenarioError(f"{option}: {why}") from None


# --------------------------------------------------------------------------- kernel


def check_kernel(version: str, *, option: str = "--kernel") -> str:
    """The command line's one check of a kernel version, before any work: a modelled version
    (:data:`hotremove.kernels.VERSIONS`), or the one-line error naming ``option``."""
    try:
        return get_kernel(version.strip()).version
    except ScenarioError as exc:
        _, _, why = str(exc).partition(": ")
        raise ScenarioError(f"{option}: {why}") from None


def _one_kernel(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else check_kernel(value)


def _kernel_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    if value is None:
        return None
    versions = [part.strip() for part in value.split(",")]
    if not any(versions):
        raise ScenarioError(f"--kernel: name a version (modelled: {', '.join(VERSIONS)})")
    if not all(versions):  # "6.1," or "6.1,,7.2": a version left out by mistake, say so
        raise ScenarioError(f"--kernel: {value!r} has an empty item between its commas")
    checked = [check_kernel(v) for v in versions]
    for i, version in enumerate(checked):  # twice would silently be once: say so instead
        if version in checked[:i]:
            raise ScenarioError(f"--kernel: {version} is given twice")
    return tuple(checked)


def kernel_option(
    help: str = "Simulate this kernel (overrides [kernel] version).",
) -> Callable[..., Any]:
    """``--kernel VERSION``: one modelled version, checked while the command line is parsed."""
    return click.option(
        "--kernel",
        metavar="|".join(VERSIONS),
        callback=_one_kernel,
        help=help,
    )


def kernels_option(help: str) -> Callable[..., Any]:
    """``--kernel V[,V...]``: modelled versions (a tuple, in the order given), checked while
    the command line is parsed."""
    return click.option(
        "--kernel",
        "kernels",
        metavar="V[,V...]",
        callback=_kernel_list,
        help=help,
    )


# --------------------------------------------------------------------------- run options


@dataclass(frozen=True)
class RunOptions:
    """What ``run`` and ``demo`` take beside the scenario (:func:`run_options`)."""

    json_out: bool
    strategy: str | None
    mode: str | None
    seed: int | None
    device: str | None
    keep_images: Path | None
    checks_mode: str | None
    faults: tuple[str, ...]
    kernel: str | None
    force: bool

    def apply(self, scn: Scenario) -> Scenario:
        """The scenario with this command line's overrides."""
        return apply_overrides(
            scn,
            strategy=self.strategy,
            mode=self.mode,
            seed=self.seed,
            device=self.device,
            faults=self.faults,
            kernel=self.kernel,
        )


def _toml_value(text: str) -> Any:
    """``--fault``'s VALUE as the same key would be in a scenario's ``[faults]`` table: a TOML
    number or boolean when it reads as one (the scenario's types are strict), else the word."""
    try:
        return parse_toml(f"v = {text}")["v"]
    except TomlError:
        return text


def apply_overrides(
    scn: Scenario,
    *,
    strategy: str | None = None,
    mode: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    faults: tuple[str, ...] = (),
    kernel: str | None = None,
) -> Scenario:
    injected: dict[str, Any] = {}
    for fault in faults:
        key, sep, value = fault.partition("=")
        if not sep or not key.strip():
            raise HotremoveError(f"--fault: expected KEY=VALUE, got {fault!r}")
        injected[key.strip()] = _toml_value(value.strip())
    return scn.with_overrides(
        remove={"strategy": strategy, "mode": mode},
        workload={"seed": seed},
        device={"preset": device},
        faults=injected,
        kernel={"version": kernel},
    )


#: ``--seed``: what ``workload.seed`` takes (a negative seed is refused in one line)
SEED = Digits(0, (1 << 64) - 1)


def mode_option(help: str = "Override remove.mode.") -> Callable[..., Any]:
    return click.option("--mode", type=click.Choice(MODES), help=help)


def device_option(**attrs: Any) -> Callable[..., Any]:
    attrs.setdefault("help", "Override device.preset.")
    return click.option("--device", type=click.Choice(sorted(PRESETS)), **attrs)


_RUN = (
    click.option("--json", "json_out", is_flag=True, help="Print the report as one JSON object."),
    click.option(
        "--strategy",
        metavar="auto|writeback|NAME",
        help="Override remove.strategy (a variant listed by `hotremove plugins`).",
    ),
    mode_option("Override remove.mode (first round's migrate_mode)."),
    click.option("--seed", type=SEED, help="Override workload.seed (0 to 2^64 - 1)."),
    device_option(),
    click.option(
        "--keep-images",
        type=click.Path(file_okay=False, path_type=Path),
        help="Keep the filesystem images in this directory (created).",
    ),
    click.option(
        "--checks",
        "checks_mode",
        type=click.Choice(["off", "on", "strict"]),
        help="off: no per-step checks; on: per-step checks and lockdep (lock order, "
        "sleeping in atomic context); strict: stop at the first lock violation.",
    ),
    click.option(
        "--fault",
        "faults",
        multiple=True,
        metavar="KEY=VALUE",
        help="Inject a fault (repeatable): writeback_eio=0.05, enomem_after=N, "
        "plugin_raises=NAME; overrides the scenario's [faults].",
    ),
    kernel_option(
        f"Simulate this kernel's offline ({', '.join(VERSIONS)}); overrides [kernel] version."
    ),
    click.option(
        "--force",
        is_flag=True,
        help="Run even when the estimated memory need exceeds what this machine has available; "
        "write into a --keep-images directory that holds files already.",
    ),
)
_RUN_NAMES = tuple(f.name for f in fields(RunOptions))


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command that runs one scenario, passed as one ``opts: RunOptions``."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        opts = RunOptions(**{name: kwargs.pop(name) for name in _RUN_NAMES})
        return f(*args, opts=opts, **kwargs)

    for option in reversed(_RUN):
        command = option(command)
    return command


__all__ = [
    "PROG",
    "SEED",
    "RunOptions",
    "Settings",
    "apply_overrides",
    "begin",
    "check_kernel",
    "check_strategy",
    "device_option",
    "kernel_option",
    "kernels_option",
    "log",
    "mode_option",
    "run_options",
    "shared_options",
]
