"""The writes of ``offline`` to ``memoryN/state``: one ``offline_pages`` call per block.

The kernel offlines one memory block per call (drivers/base/memory.c: ``memory_block_offline``
→ ``offline_pages`` over that block alone). :func:`offline` writes the blocks one after another
in ``remove.order``, as a shell loop over the sysfs files does (and the real-kernel guest):
each write is independent — a block that fails is rolled back and stays online, the blocks
offlined before it stay offline, and the next block is still tried; ``remove.timeout`` limits
each write (the guest's ``timeout`` around each ``echo offline``).

``offline_and_remove_memory`` (mm/memory_hotplug.c, what a driver such as virtio-mem calls)
instead walks the blocks in ascending order (``walk_memory_blocks``), stops at the first
failure and re-onlines the blocks it had offlined (``try_reonline_memory_block``); that is
not what ``hotremove run`` models.

A page moved into a block that is offlined later moves again then; where destinations land is
the buddy allocator's (:mod:`hotremove.model.buddy`): ascending order fills the next block to
go with the first one's pages (the kernel, 6.1 and 6.12: 65,4xx pages migrated to remove two
blocks holding 48,000), descending sends them to blocks that stay.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from hotremove.errors import HotremoveError
from hotremove.hooks import Hooks
from hotremove.kernels import Kernel
from hotremove.mm.memory_hotplug import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_TIMEOUT,
    Offliner,
)
from hotremove.mm.migrate_pages import Migrator, ProgressFn
from hotremove.mm.result import OfflineResult
from hotremove.model.locks import running
from hotremove.model.machine import Machine
from hotremove.model.memory import ONLINE
from hotremove.model.migrate_mode import DEFAULT_POLICY, MigrateMode
from hotremove.sim.checks import check_machine
from hotremove.sim.faults import FaultSettings


class OfflineError(HotremoveError):
    """The request itself is invalid (-EINVAL): nonexistent or already offline block."""


#: ``remove.order``: the order of the per-block ``offline_pages`` calls
ORDERS = ("ascending", "descending", "listed")


def removal_order(blocks: list[int], order: str = "ascending") -> list[int]:
    """The blocks in the order they are offlined: ``ascending`` (what
    ``offline_and_remove_memory`` does: ``walk_memory_blocks``), ``descending``, or
    ``listed`` (as given; a repeat is dropped)."""
    unique = list(dict.fromkeys(blocks))
    if order == "ascending":
        return sorted(unique)
    if order == "descending":
        return sorted(unique, reverse=True)
    if order == "listed":
        return unique
    raise OfflineError(f"remove.order: must be one of {', '.join(ORDERS)} (got {order!r})")


def offline(
    machine: Machine,
    hooks: Hooks,
    blocks: list[int],
    *,
    mode: MigrateMode = MigrateMode.SYNC,
    policy: str = DEFAULT_POLICY,
    checks: bool = True,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    progress: ProgressFn | None = None,
    faults: FaultSettings | None = None,
    fault_seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    batching: bool = True,
    kernel: Kernel | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    start: float = 0.0,
    order: str = "ascending",
) -> OfflineResult:
    """Offline memory ``blocks`` of ``machine``, one ``offline_pages`` call per block in
    ``order`` (:func:`removal_order`; each call moves every in-use page out of its block, or
    rolls the block back — see the module doc). ``batching=False`` sends every page through
    the per-page path (the reference the batched path of :mod:`hotremove.mm.batch` is tested
    against). ``should_stop`` is polled at batch boundaries (a pending signal: -EINTR, that
    block rolled back, no further block tried). ``timeout`` limits each call. A scenario's
    settings come as ``**scenario.offline_kwargs()``."""
    nr_blocks = len(machine.memory.blocks)
    for b in blocks:
        if not 0 <= b < nr_blocks:
            raise OfflineError(
                f"remove.blocks: block {b} does not exist (memory has blocks 0-{nr_blocks - 1})"
            )
        if machine.memory.block_state[b] != ONLINE:
            raise OfflineError(f"remove.blocks: block {b} is {machine.memory.block_state[b]}")
    if kernel is not None and kernel is not machine.kernel:
        raise OfflineError(
            f"kernel.version: this machine was built for kernel {machine.kernel.version}, "
            f"not {kernel.version}"
        )
    ordered = removal_order(blocks, order)
    result = OfflineResult(ordered, mode, policy, kernel=machine.kernel.version, order=order)
    migrator = Migrator(
        machine,
        hooks,
        result,
        policy=policy,
        checks=checks,
        faults=faults or FaultSettings(),
        progress=progress,
        should_stop=should_stop,
        batching=batching,
    )
    # the time between the workload's writes and the offline
    machine.timers.idle_until(machine.writes_end + start)
    # A cyclic collection in the middle of the run (the per-page path makes many short-lived
    # handles) is a cost the kernel does not have; the offline creates no reference cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with running(machine.task):
            for block in ordered:
                offliner = Offliner(
                    machine,
                    block,
                    migrator,
                    mode=mode,
                    max_rounds=max_rounds,
                    fault_seed=fault_seed,
                    timeout=timeout,
                )
                offliner.offline_pages()
                if offliner.interrupted == "interrupted":  # the user's signal: stop here
                    break
    finally:
        if collecting:
            gc.enable()
    if checks:  # the whole machine's invariants, once after the last call
        result.check_failures.extend(check_machine(machine, ordered))
    conclude(result)
    return result


def conclude(result: OfflineResult) -> None:
    """The whole removal's verdict from its calls: offlined when every block went; the
    reason is the first failing block's (named when there were several blocks)."""
    calls = result.per_block
    result.offlined = len(calls) == len(result.blocks) and all(c.offlined for c in calls)
    failing = next((c for c in calls if not c.offlined), None)
    if failing is not None:
        several = len(result.blocks) > 1
        result.reason = f"block {failing.block}: {failing.reason}" if several else failing.reason
    elif not result.offlined:
        result.reason = "interrupted before every block was tried"
