"""``hotremove kernel fuzz``: random scenarios, each run in the simulator and in the real
kernels and judged with ``kernel diff``'s tolerances (issue #25).

The command joins ``hotremove kernel`` here (:data:`kernel_group`, what the top-level group
loads), which keeps :mod:`hotremove.cli.kernel` within its line budget.

Exit status 0 when every case judged agrees, 1 when some disagree or had no guest result;
bad input is one line and 2. Progress is a rich bar on stderr; ``--json`` prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hotremove.cli.output import emit_json, stdout_console
from hotremove.cli.params import Digits
from hotremove.cli.settings import begin, shared_options
from hotremove.errors import HotremoveError
from hotremove.realkernel.fetch import check_version


def _versions(value: str) -> list[str]:
    versions = [v.strip() for v in value.split(",") if v.strip()]
    if not versions:
        raise HotremoveError("--kernel: name at least one version")
    if "2004" in versions:
        raise HotremoveError("--kernel: 2004 has no real kernel to boot")
    return [check_version(v) for v in versions]


@click.command("fuzz")
@click.option(
    "--kernel",
    "versions",
    default="6.1,6.12",
    show_default=True,
    help="Kernel versions, comma-separated (every case runs on each).",
)
@click.option("--cases", "count", type=Digits(1, 100_000), default=20, show_default=True)
@click.option("--seed", type=Digits(0, 2**31), default=1, show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory of results.csv (resumed), summary.json and disagreements/.",
)
@click.option(
    "--per-guest",
    type=Digits(1, 16),
    default=4,
    show_default=True,
    help="Cases run in one guest boot.",
)
@click.option(
    "--workers",
    type=Digits(1, 64),
    default=1,
    show_default=True,
    help="Guests at once (local threads).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDR",
    help="Run the batches on this Dask scheduler (one guest per worker).",
)
@click.option(
    "--shrink-rounds",
    type=Digits(0, 50),
    default=4,
    show_default=True,
    help="Rounds of shrinking per disagreement (one guest boot each).",
)
@click.option(
    "--qemu-lock",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Hold this file (flock) while each guest runs: guests take turns with "
    "other users of the lock.",
)
@click.option("--fresh", is_flag=True, help="Start results.csv over instead of resuming it.")
@click.option("--json", "json_out", is_flag=True, help="The summary as one JSON object.")
@shared_options
@click.pass_context
def fuzz_cmd(
    ctx: click.Context,
    versions: str,
    count: int,
    seed: int,
    out: Path,
    per_guest: int,
    workers: int,
    scheduler: str | None,
    shrink_rounds: int,
    qemu_lock: Path | None,
    fresh: bool,
    json_out: bool,
) -> int:
    """Random mirrorable scenarios on the simulator and real kernels, judged like `kernel diff`."""
    from hotremove.realkernel.fuzz.driver import FuzzOptions, run_fuzz

    settings = begin(ctx)
    if scheduler and workers != 1:
        raise HotremoveError("--workers: the cluster at --scheduler has its own workers")
    opts = FuzzOptions(
        versions=_versions(versions),
        count=count,
        seed=seed,
        out=out,
        per_guest=per_guest,
        workers=workers,
        scheduler=scheduler,
        shrink_rounds=shrink_rounds,
        lock=qemu_lock,
        fresh=fresh,
    )
    quiet = settings.quiet or json_out
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=quiet,
    )
    task = bar.add_task("fuzz", total=count * len(opts.versions))

    def progress(what: str, done: int, total: int) -> None:
        if total:
            bar.update(task, description=what, completed=done, total=total)
        else:
            bar.update(task, description=what)

    with bar:
        result = run_fuzz(opts, progress)
    summary = result.as_dict()
    if json_out:
        emit_json(summary)
    elif not settings.quiet:
        stdout_console().print(render(summary))
    bad = any(r["status"] != "agree" for r in result.rows)
    return 1 if bad else 0


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def render(summary: dict[str, Any]) -> Table:
    table = Table(title="hotremove kernel fuzz: agreement with the real kernels")
    for col in ("kernel", "type", "data mode", "cases", "agree", "disagree", "error", "agreement"):
        table.add_column(
            col, justify="right" if col in ("cases", "agree", "disagree", "error") else "left"
        )
    for r in summary["table"]:
        table.add_row(
            r["kernel"],
            r["type"],
            r["mode"],
            str(r["cases"]),
            str(r["agree"]),
            str(r["disagree"]),
            str(r["error"]),
            _pct(r["agreement"]),
        )
    totals = "; ".join(
        f"{v}: {t['agree']}/{t['agree'] + t['disagree']} agree ({_pct(t['agreement'])}), "
        f"{t['error']} without result"
        for v, t in summary["totals"].items()
    )
    rate = summary["cases_per_hour"]
    table.caption = (
        f"{totals}. {summary['new_cases']} case runs this time in {summary['wall_seconds']:.0f} s"
        + (f" ({rate:.0f} cases/h)" if rate else "")
        + "".join(
            f"\ndisagreement: case {d['case']} on {d['kernel']}: {', '.join(d['failing'] or [])} "
            f"→ {d['scenario']}"
            for d in summary["disagreements"]
        )
    )
    return table


def _kernel_group() -> click.Group:
    from hotremove.cli.kernel import kernel

    kernel.add_command(fuzz_cmd)
    return kernel


#: ``hotremove kernel`` with ``fuzz``
kernel_group = _kernel_group()
