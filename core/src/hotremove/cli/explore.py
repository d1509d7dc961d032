"""``hotremove explore``: run a scenario's offline under many seeded interleavings.

Registered in the ``hotremove`` group. Like the other commands it returns its exit status
(0 every schedule passed, 1 a schedule failed — its findings, the replay command and the end of
its trace are printed, 2 bad input raised as :class:`~hotremove.errors.HotremoveError`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from hotremove.cli.base import PROG, Command
from hotremove.cli.display import progress_bar
from hotremove.cli.output import emit_json
from hotremove.cli.params import Digits
from hotremove.cli.settings import begin, check_strategy, mode_option, shared_options
from hotremove.errors import HotremoveError

DEFAULT_ACTORS = "writeback,writer,journal,reader"


def _load_plugin(spec: str) -> tuple[str, ModuleType]:
    """A plugin module given as a file (``tests/known_bad/strategies.py``) or an import name."""
    path = Path(spec)
    if path.suffix == ".py":
        if not path.is_file():
            raise HotremoveError(f"--plugin: no such file {spec}")
        name = f"hotremove_explore_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise HotremoveError(f"--plugin: cannot load {spec}")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise HotremoveError(f"--plugin {spec}: {type(exc).__name__}: {exc}") from None
        return path.stem, module
    try:
        return spec, importlib.import_module(spec)
    except ImportError as exc:
        raise HotremoveError(f"--plugin: cannot import {spec!r}: {exc}") from None


@click.command("explore", cls=Command)
@click.argument("scenario", metavar="SCENARIO.toml")
@click.option(
    "-n", "--schedules", type=Digits(1), default=200, show_default=True,
    help="Number of schedules to run (stops at the first failure).",
)  # fmt: skip
@click.option("--seed", type=Digits(), default=1, show_default=True, help="Seed of every schedule.")
@click.option(
    "--schedule", "only", type=Digits(0), metavar="K",
    help="Replay only schedule K of --seed (as printed by a failure).",
)  # fmt: skip
@click.option(
    "--actors", default=DEFAULT_ACTORS, show_default=True, metavar="LIST",
    help="What runs beside the migration: writeback, writer, journal, reader ('' for none).",
)  # fmt: skip
@click.option("--strategy", metavar="NAME", help="Override remove.strategy.")
@mode_option()
@click.option(
    "--plugin", "plugin_specs", multiple=True, metavar="FILE.py|MODULE",
    help="Load this plugin module beside the installed ones (repeatable).",
)  # fmt: skip
@click.option(
    "--trace-lines", type=Digits(0), default=30, show_default=True,
    help="Steps of the failing interleaving to print (all of them with --schedule).",
)  # fmt: skip
@click.option(
    "--full-every", type=Digits(0), default=0, metavar="K",
    help="Also run the full verification (checker, read-back) every K schedules (always on "
    "the first).",
)  # fmt: skip
@click.option(
    "--focus", type=Digits(0), metavar="PAGES",
    help="Let the actors touch, and preempt at, only a window of PAGES pages of the region "
    "chosen from --seed (0: every page; default: 16 when the region holds more than 4,096).",
)  # fmt: skip
@click.option("--json", "json_out", is_flag=True, help="Print the outcome as one JSON object.")
@shared_options
@click.pass_context
def explore(
    ctx: click.Context,
    scenario: str,
    schedules: int,
    seed: int,
    only: int | None,
    actors: str,
    strategy: str | None,
    mode: str | None,
    plugin_specs: tuple[str, ...],
    trace_lines: int,
    full_every: int,
    focus: int | None,
    json_out: bool,
) -> int:
    """Explore interleavings of the offline with writeback, writers, the journal and readers.

    SCENARIO.toml is a scenario file or a built-in tiny one: ext2, ext3-ordered, ext3-journal.
    Each schedule is derived from --seed and its number; the first failing one is printed
    with the command that replays it, bit for bit.
    """
    from hotremove.explore.actors import ACTORS
    from hotremove.explore.session import (
        check_explorable,
        explore_scenario,
        format_failure,
        load_scenario,
        replay_command,
    )
    from hotremove.plugins import load_plugins

    settings = begin(ctx)
    chosen = tuple(a.strip() for a in actors.split(",") if a.strip())
    unknown = [a for a in chosen if a not in ACTORS]
    if unknown:
        raise HotremoveError(
            f"--actors: unknown actor(s) {', '.join(unknown)} ({', '.join(ACTORS)})"
        )
    scn = load_scenario(scenario).with_overrides(remove={"strategy": strategy, "mode": mode})
    plugins = load_plugins(extra=[_load_plugin(spec) for spec in plugin_specs])
    check_strategy(scn.remove.strategy, plugins, option="--strategy")
    first, count = (only, 1) if only is not None else (0, schedules)
    check_explorable(scn, focus)  # before anything is built
    start = time.perf_counter()
    show = settings.progress
    if show is None:
        show = not (json_out or settings.quiet) and sys.stderr.isatty()
    with progress_bar(disable=not show) as bar:
        task = bar.add_task(f"explore seed {seed}", total=count)
        result = explore_scenario(
            scn, schedules=count, seed=seed, actors=chosen, first=first, plugins=plugins,
            full_every=full_every, progress=lambda _schedule: bar.advance(task), focus=focus,
        )  # fmt: skip
    wall = time.perf_counter() - start
    extra = [f"--strategy={strategy}"] if strategy else []
    extra += [f"--mode={mode}"] if mode else []
    extra += [f"--plugin={spec}" for spec in plugin_specs]
    extra += [f"--focus={focus}"] if focus is not None else []
    focused = result.focus.describe() if result.focus is not None else None
    failure = result.failure
    replay = (
        replay_command(scenario, seed, failure.schedule, actors=chosen, extra=extra)
        if failure
        else None
    )
    if json_out:
        out: dict[str, Any] = {
            "scenario": scenario,
            "seed": seed,
            "strategy": scn.remove.strategy,
            "actors": list(chosen),
            "schedules_run": result.schedules_run,
            "offlined": result.offlined,
            "steps": result.steps,
            "context_switches": result.switches,
            "wall_seconds": wall,
            "ok": result.ok,
            "focus": focused,
            "failure": None,
        }
        if failure is not None:
            out["failure"] = {
                "schedule": failure.schedule,
                "findings": [
                    {"kind": f.kind, "actor": f.actor, "message": f.message, "step": f.step}
                    for f in failure.findings
                ],
                "trace": [str(e) for e in failure.trace[-trace_lines:]],
                "digest": failure.digest,
                "replay": replay,
            }
        emit_json(out)
        return 0 if result.ok else 1
    if focused is not None and not settings.quiet:
        click.echo(focused)
    if failure is None:
        if settings.quiet:
            return 0
        what = f"schedule {first}" if only is not None else f"{result.schedules_run} schedules"
        digest = f", trace digest {result.digests[-1]}" if only is not None else ""
        click.echo(
            f"explore {scenario} (strategy {scn.remove.strategy}, actors: offline, "
            f"{', '.join(chosen) or 'none'}): {what} of seed {seed} passed — "
            f"{result.offlined} offlined, {result.steps} steps, {result.switches} context "
            f"switches, {wall:.2f} s{digest}"
        )
        return 0
    lines = format_failure(
        failure, trace_lines=len(failure.trace) if only is not None else trace_lines
    )
    click.echo(
        f"explore {scenario} (strategy {scn.remove.strategy}): {result.schedules_run} "
        f"schedule(s) run, {wall:.2f} s"
    )
    click.echo("\n".join(lines))
    click.echo(f"replay: {replay}")
    return 1


def main() -> None:  # pragma: no cover - for running the command on its own
    explore.main(prog_name=f"{PROG} explore")


__all__ = ["explore"]
