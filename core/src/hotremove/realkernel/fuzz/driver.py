"""The fuzz run: generate the cases, run what the results file lacks in batches (one guest
boot each) on local threads or a Dask cluster, append each verdict as it comes, then shrink
every disagreement and write it to ``DIR/disagreements/``."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotremove.errors import HotremoveError
from hotremove.realkernel.fuzz import results as res
from hotremove.realkernel.fuzz.batch import STOP
from hotremove.realkernel.fuzz.generate import Case, cases
from hotremove.realkernel.fuzz.shrink import shrink
from hotremove.realkernel.fuzz.task import run_task
from hotremove.realkernel.fuzz.toml import dumps
from hotremove.sweep.results import ResultsFile

#: progress: (what, cases done, cases in all)
Progress = Callable[[str, int, int], None]


@dataclass
class FuzzOptions:
    versions: Sequence[str]
    count: int
    seed: int
    out: Path
    per_guest: int = 4
    workers: int = 1
    scheduler: str | None = None
    shrink_rounds: int = 4
    lock: Path | None = None
    accel: str | None = None
    fresh: bool = False


@dataclass
class FuzzResult:
    rows: list[dict[str, Any]]
    new: int = 0
    wall_seconds: float = 0.0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  #: the filesystem types drawn from

    def as_dict(self) -> dict[str, Any]:
        hours = self.wall_seconds / 3600
        return {
            "types": self.types,
            "totals": res.totals(self.rows),
            "table": res.summary(self.rows),
            "new_cases": self.new,
            "wall_seconds": round(self.wall_seconds, 1),
            "cases_per_hour": round(self.new / hours, 1) if hours > 0 and self.new else None,
            "disagreements": self.disagreements,
        }


class _Runner:
    """Submits batches to threads (``workers`` guests at once) or to a Dask cluster (one
    guest per worker)."""

    def __init__(self, opts: FuzzOptions) -> None:
        self.opts = opts
        self.client: Any = None
        if opts.scheduler:
            try:
                from distributed import Client
            except ImportError:
                raise HotremoveError(
                    "--scheduler: Dask is not installed (pip install 'hotremove[dask]')"
                ) from None
            try:
                self.client = Client(opts.scheduler, timeout=10)
            except (OSError, TimeoutError, ValueError) as exc:
                raise HotremoveError(
                    f"--scheduler: cannot connect to {opts.scheduler}: {exc}"
                ) from None
        else:
            self.pool = concurrent.futures.ThreadPoolExecutor(max(1, opts.workers))

    def submit(self, items: list[tuple[str, dict[str, Any]]], version: str) -> Any:
        kwargs = {
            "workdir": str(self.opts.out / "work"),
            "lock": str(self.opts.lock) if self.opts.lock else None,
            "accel": self.opts.accel,
        }
        if self.client is not None:
            return self.client.submit(run_task, items, version, pure=False, **kwargs)
        return self.pool.submit(run_task, items, version, **kwargs)

    def as_completed(self, futures: list[Any]) -> Any:
        if self.client is not None:
            from distributed import as_completed

            return as_completed(futures)
        return concurrent.futures.as_completed(futures)

    def run_now(self, items: list[tuple[str, dict[str, Any]]], version: str) -> list[dict]:
        return self.submit(items, version).result()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _batches(todo: list[tuple[Case, str]], size: int) -> list[tuple[str, list[Case]]]:
    per_kernel: dict[str, list[Case]] = {}
    for case, version in todo:
        per_kernel.setdefault(version, []).append(case)
    out = []
    for version, group in per_kernel.items():
        out += [(version, group[i : i + size]) for i in range(0, len(group), size)]
    # interleave the kernels so an interrupted run has some of each
    return sorted(out, key=lambda b: (b[1][0].number, b[0]))


def run_fuzz(opts: FuzzOptions, progress: Progress | None = None) -> FuzzResult:
    from hotremove.realkernel.fetch import fetch_kernel
    from hotremove.realkernel.fuzz.generate import mountable_types

    say = progress or (lambda *_: None)
    types = mountable_types([fetch_kernel(v) for v in opts.versions])
    all_cases = cases(opts.seed, opts.count, opts.versions, types)
    opts.out.mkdir(parents=True, exist_ok=True)
    results = ResultsFile(opts.out / "results.csv", res.COLUMNS)
    old = results.open(resume=True, overwrite=opts.fresh)
    old = [r for r in old if int(r["seed"]) == opts.seed]
    finished = res.done(old)
    todo = [(c, v) for c in all_cases for v in opts.versions if (c.number, v) not in finished]
    by_number = {c.number: c for c in all_cases}
    rows = list(old)
    fresh_verdicts: dict[tuple[int, str], dict[str, Any]] = {}
    total = len(all_cases) * len(opts.versions)
    runner = _Runner(opts)
    STOP.clear()
    t0 = time.monotonic()
    new = 0
    try:
        say("cases", total - len(todo), total)
        futures = {
            runner.submit([(c.name, c.data) for c in group], version): (version, group)
            for version, group in _batches(todo, max(1, opts.per_guest))
        }
        for future in runner.as_completed(list(futures)):
            version, group = futures[future]
            verdicts = future.result()
            for case, verdict in zip(group, verdicts, strict=True):
                row = res.row(
                    case, version, _Verdictish(verdict), verdict["guest_seconds"], time.time()
                )
                results.append(row)
                rows.append({k: str(v) for k, v in row.items()})
                fresh_verdicts[(case.number, version)] = verdict
                new += 1
            say("cases", total - len(todo) + new, total)
        wall = time.monotonic() - t0
        disagreements = []
        for r in rows:
            if r["status"] != "disagree":
                continue
            key = (int(r["case"]), str(r["kernel"]))
            disagreements.append(
                _shrunk(by_number[key[0]], key[1], fresh_verdicts.get(key), opts, runner, say)
            )
    except BaseException:
        STOP.set()  # Ctrl-C: no guest starts any more; the running ones finish
        raise
    finally:
        runner.close()
        results.close()
    result = FuzzResult(
        rows=rows, new=new, wall_seconds=wall, disagreements=disagreements, types=types
    )
    (opts.out / "summary.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result


class _Verdictish:
    """A task's verdict dict with the attributes :func:`results.row` reads."""

    def __init__(self, verdict: dict[str, Any]) -> None:
        self.status = verdict["status"]
        self.failing = verdict["failing"]
        self.error = verdict["error"]


def _shrunk(
    case: Case,
    version: str,
    verdict: dict[str, Any] | None,
    opts: FuzzOptions,
    runner: _Runner,
    say: Progress,
) -> dict[str, Any]:
    """Shrink one disagreement (unless an earlier run wrote it) and write its files."""
    stem = opts.out / "disagreements" / f"{case.name}-linux-{version}"
    toml_file, done_file, text_file = (Path(f"{stem}.{ext}") for ext in ("toml", "json", "txt"))
    if done_file.exists():
        return json.loads(done_file.read_text())
    seen: dict[str, dict[str, Any]] = {}
    rounds = [0]

    def still_disagrees(candidates: Sequence[dict[str, Any]]) -> list[bool]:
        rounds[0] += 1
        say(f"shrinking {case.name} on {version}, round {rounds[0]}", 0, 0)
        items = [(f"{case.name}-s{rounds[0]}-{i}", d) for i, d in enumerate(candidates)]
        verdicts = runner.run_now(items, version)
        for d, v in zip(candidates, verdicts, strict=True):
            seen[json.dumps(d, sort_keys=True)] = v
        return [v["status"] == "disagree" for v in verdicts]

    small, steps = shrink(
        case.data,
        still_disagrees,
        versions=[version],
        rounds=opts.shrink_rounds,
        per_round=opts.per_guest,
    )
    final = seen.get(json.dumps(small, sort_keys=True)) or verdict
    if final is None:  # a resumed disagreement not shrunk: run it again for its rows
        final = runner.run_now([(case.name, small)], version)[0]
    stem.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# kernel fuzz: case {case.number} of seed {case.seed} on Linux {version}, shrunk\n"
        f"# ({', '.join(steps) or 'no smaller variant still disagreed'});\n"
        f"# disagreeing metrics: {', '.join(final.get('failing') or []) or 'none on re-run'}\n"
        f"#   hotremove kernel diff {toml_file.name} --kernel {version}\n"
    )
    toml_file.write_text(header + dumps(small))
    entry = {
        "case": case.number,
        "seed": case.seed,
        "kernel": version,
        "steps": steps,
        "status_after_shrink": final.get("status"),
        "failing": final.get("failing"),
        "scenario": str(toml_file),
        "rows": final.get("rows"),
        "timeline": final.get("timeline"),
        "original": case.data,
        "shrunk": small,
    }
    done_file.write_text(json.dumps(entry, indent=2) + "\n")
    text_file.write_text(diff_text(entry))
    return entry


def diff_text(entry: dict[str, Any]) -> str:
    lines = [
        f"case {entry['case']} (seed {entry['seed']}) on Linux {entry['kernel']}: "
        f"{entry['status_after_shrink']}",
        f"shrunk by: {', '.join(entry['steps']) or 'nothing'}",
        f"{'metric':<26} {'simulated':>12} {'real':>12}  agree  tolerance",
    ]
    for row in entry.get("rows") or []:
        lines.append(
            f"{row['metric']:<26} {row['simulated']!s:>12} {row['real']!s:>12}  "
            f"{'yes' if row['agree'] else 'NO ':<5}  {row['tolerance']}"
        )
    return "\n".join(lines) + "\n"
