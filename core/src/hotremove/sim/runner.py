"""One scenario, end to end: plugins → build → offline → verify → report."""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import structlog

from hotremove.errors import ScenarioError, did_you_mean
from hotremove.mm.memory_block import offline
from hotremove.mm.migrate_pages import ProgressFn
from hotremove.plugins import PluginSet, load_plugins
from hotremove.scenario import Scenario
from hotremove.sim.report import Report
from hotremove.sim.verify import verify
from hotremove.workload import Built, build

log = structlog.get_logger("hotremove.sim.runner")


def check_policy(policy: str, plugins: PluginSet) -> None:
    """``remove.strategy`` must be ``auto`` or a policy some installed plugin registered."""
    if policy != "auto" and policy not in plugins.policies:
        names = ["auto", *sorted(plugins.policies)]
        raise ScenarioError(
            f"remove.strategy: unknown strategy {policy!r}{did_you_mean(policy, names)} "
            f"(installed: {', '.join(names)})"
        )


def check_faults(scenario: Scenario, plugins: PluginSet) -> None:
    """``faults.plugin_raises`` must name an installed plugin (a typo would inject nothing)."""
    name = scenario.faults.plugin_raises
    loaded = sorted(p.name for p in plugins.report if not p.error)
    if name is not None and name not in loaded:
        raise ScenarioError(
            f"faults.plugin_raises: no installed plugin {name!r}{did_you_mean(name, loaded)} "
            f"(installed: {', '.join(loaded)})"
        )


def run_scenario(
    scenario: Scenario,
    *,
    name: str = "scenario",
    plugins: PluginSet | None = None,
    workdir: Path | None = None,
    progress: Callable[[int], ProgressFn | None] | None = None,
    do_verify: bool = True,
    inspect: Callable[[Built], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    image_cache: Path | None = None,
) -> Report:
    """Run ``scenario``; images go to ``workdir`` (kept) or a temporary directory (removed).

    ``progress(total)`` may return a callback advanced by the number of migrated pages.
    ``should_stop()`` is polled between batches: True backs the offline off (-EINTR).
    ``inspect(built)`` sees the machine after the offline and before verification (tests).
    ``image_cache``: a directory of cached images (``default_image_cache()``, what the CLI's
    ``run``/``demo``/``compare`` pass unless ``--keep-images``) shared copy-on-write, never
    written; None makes every image afresh (``FilesystemType.make_image``) in the work
    directory.
    """
    plugins = plugins or load_plugins()
    check_policy(scenario.remove.strategy, plugins)
    check_faults(scenario, plugins)
    keep = workdir is not None
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hotremove-")))
        structlog.contextvars.bind_contextvars(scenario=name, seed=scenario.workload.seed)
        started = time.perf_counter()
        built = build(scenario, plugins.hooks, workdir, image_cache=image_cache)
        built_in = time.perf_counter() - started
        stack.callback(built.machine.close)
        if do_verify or keep:  # the images will be copied: overlap it with the offline
            built.machine.start_image_copies()
        report = offline_built(
            built,
            plugins,
            name=name,
            progress=progress,
            should_stop=should_stop,
            inspect=inspect,
            do_verify=do_verify,
        )
        report.build_seconds = built_in
        if keep:  # the kept directory holds every image, verified or not
            built.machine.materialise_images()
        structlog.contextvars.unbind_contextvars("scenario", "seed")
    del built
    gc.collect()  # a sweep worker runs scenario after scenario: free each machine's frames now
    return report


def offline_built(
    built: Built,
    plugins: PluginSet,
    *,
    name: str,
    device: str | None = None,
    progress: Callable[[int], ProgressFn | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    inspect: Callable[[Built], None] | None = None,
    do_verify: bool = True,
) -> Report:
    """Offline the blocks ``built.scenario`` names on a built machine, measure it, verify it.
    Shared by scenario runs and snapshot runs, so both report the same way."""
    machine = built.machine
    scenario = built.scenario
    rm = scenario.remove
    # what runs between the writes and the offline
    machine.timers.idle_until(machine.writes_end + rm.start)
    io = machine.io
    flushed = machine.vmstat.nr_flushed
    before = (io.write_requests, io.bytes_written, io.journal_requests)
    cpu0, io0 = machine.clock.cpu_seconds, machine.clock.io_seconds
    memory = machine.memory
    in_region = sum(memory.blocks[b].nr_pages - memory.nr_free(b) for b in rm.blocks)
    result = offline(
        machine,
        plugins.hooks,
        list(rm.blocks),
        progress=progress(in_region) if progress else None,
        should_stop=should_stop,
        **scenario.offline_kwargs(),
    )
    migration_ios = sum(s.write_requests for s in result.per_aops.values())
    report = Report(
        scenario=name,
        seed=scenario.workload.seed,
        device=device or scenario.device.preset,
        offline=result,
        writeback_ios=migration_ios,
        background_ios=io.write_requests - before[0] - migration_ios,
        writeback_bytes=io.bytes_written - before[1],
        journal_ios=io.journal_requests - before[2],
        cpu_seconds=machine.clock.cpu_seconds - cpu0,
        io_seconds=machine.clock.io_seconds - io0,
        verify=None,
        lock_violations=list(machine.task.violations),
        flushed=machine.vmstat.nr_flushed - flushed,
        plugins={info.name: info.version for info in plugins.report if not info.error},
        write_errors=[
            {
                "fs": m.host.i_sb.s_id,
                "file": m.host.path,
                "errno": "-EIO",
                "blocks": m.wb_err_blocks,
            }
            for m in machine.mappings
            if m.wb_err
        ],
    )
    if inspect is not None:
        inspect(built)
    if do_verify:
        started = time.perf_counter()
        report.verify = verify(built, plugins.hooks)
        report.verify_seconds = time.perf_counter() - started
    return report
