"""Executors: a local process pool or a Dask cluster behind one code path."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from hotremove.errors import HotremoveError
from hotremove.sweep.grid import RunSpec
from hotremove.sweep.rows import _prepare_worker, run_one

log = structlog.get_logger("hotremove.sweep")

# --------------------------------------------------------------------------- executors


class Pool(Protocol):
    """What :func:`execute` needs from an executor: concurrent.futures' shape."""

    description: str

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any: ...

    def as_completed(self, futures: list[Any]) -> Iterator[Any]: ...

    def close(self, *, cancel: bool = False) -> None: ...


class _WorkerStopped(BaseException):
    """SIGTERM in a worker while it runs: unwind the run (its temporary images go), then
    leave."""


_in_run = False
#: prctl(2) PR_SET_PDEATHSIG: the signal a process gets when its parent dies
_PR_SET_PDEATHSIG = 1


def _worker_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _in_run:
        raise _WorkerStopped
    os._exit(128 + signal.SIGTERM)  # idle: nothing to clean up


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the sweep's process dies, however it dies (a worker left behind
    would run on, orphaned, for nothing); a parent already gone ends the worker now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's clean-up stops the workers
        pass
    if os.getppid() != parent:
        os._exit(128 + signal.SIGTERM)


#: blocked while a worker is spawned: the mask survives exec(2), so the new worker's Python
#: start-up and imports (the parent's ``__main__`` installs the command's handlers) cannot be
#: interrupted into a traceback; its initializer unblocks them once its own handlers are in
_STARTING = frozenset({signal.SIGINT, signal.SIGTERM})


def _init_local_worker(log_level: str, parent: int | None = None) -> None:
    # Ctrl-C belongs to the parent, which stops the sweep (and its workers, by SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    # a SIGTERM that came while starting is delivered now: an idle worker leaves quietly
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STARTING)
    if parent is not None:
        _die_with_parent(parent)
    _prepare_worker(log_level)


def _run_in_worker(*args: Any) -> dict[str, Any]:
    """:func:`run_one` in a pool worker: SIGTERM unwinds the run — every temporary directory
    and image it made is removed — and ends the process."""
    global _in_run
    try:
        _in_run = True
        return run_one(*args)
    except _WorkerStopped:
        os._exit(128 + signal.SIGTERM)
    finally:
        _in_run = False


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalPool:
    """A process pool on this machine (``spawn``: no state shared with the parent)."""

    def __init__(self, workers: int | None = None, log_level: str = "warning") -> None:
        self.workers = workers or default_workers()
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_local_worker,
            initargs=(log_level, os.getpid()),
        )
        self.description = f"local process pool, {self.workers} worker(s)"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        # submit spawns the workers (on demand): they start with SIGINT/SIGTERM blocked; a
        # signal meanwhile waits for the parent's unblock and is handled as usual then
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STARTING)
        try:
            return self.executor.submit(_run_in_worker if fn is run_one else fn, *args)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        return concurrent.futures.as_completed(futures)

    def close(self, *, cancel: bool = False) -> None:
        """``cancel``: drop the queued runs and stop the running ones (their rows would be
        thrown away anyway), so an interrupted sweep exits at once."""
        if not cancel:
            self.executor.shutdown()
            return
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()  # SIGTERM: the worker removes its run's images and exits
        for process in processes:  # wait for that clean-up: nothing is left behind
            with contextlib.suppress(Exception):
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)


class DaskPool:
    """A Dask distributed cluster: an existing one (``scheduler`` address) or, without one, a
    ``LocalCluster`` of ``workers`` single-threaded processes started for this sweep."""

    def __init__(
        self, scheduler: str | None = None, workers: int | None = None, *, timeout: float = 10
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise HotremoveError(
                "--executor dask: Dask is not installed (pip install 'hotremove[dask]')"
            ) from None
        self.cluster = None
        if scheduler is None:
            n = workers or default_workers()
            self.cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self.cluster)
            self.description = f"Dask LocalCluster, {n} worker process(es)"
        else:
            try:
                self.client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise HotremoveError(
                    f"--scheduler: cannot connect to the Dask scheduler at {scheduler}: {exc}"
                ) from None
            nworkers = len(self.client.scheduler_info().get("workers", {}))
            self.description = f"Dask cluster at {scheduler}, {nworkers} worker(s)"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        return self.client.submit(fn, *args, key=key, pure=False)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        from distributed import as_completed

        return iter(as_completed(futures))

    def close(self, *, cancel: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def open_pool(
    executor: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    log_level: str = "warning",
) -> Pool:
    check_pool(executor, scheduler=scheduler, workers=workers)
    if executor == "local":
        return LocalPool(workers, log_level)
    return DaskPool(scheduler, workers)


def check_pool(executor: str, *, scheduler: str | None, workers: int | None) -> None:
    """The executor options that cannot go together: refused before the results file is
    made (a refused sweep leaves nothing behind)."""
    if executor == "local" and scheduler is not None:
        raise HotremoveError("--scheduler: only with --executor dask")
    if executor == "dask" and scheduler is not None and workers is not None:
        raise HotremoveError("--workers: the cluster at --scheduler has its own workers")
    if executor not in ("local", "dask"):
        raise HotremoveError(f"--executor: unknown executor {executor!r} (local or dask)")


@dataclass
class Lost:
    run: RunSpec
    reason: str


def execute(
    pool: Pool,
    runs: list[RunSpec],
    name: str,
    on_row: Callable[[RunSpec, dict[str, Any]], None],
    *,
    log_level: str = "warning",
) -> list[Lost]:
    """Submit every run, hand each row to ``on_row`` as it finishes; the one code path of
    every executor. Returns the runs whose worker was lost (they have no row)."""
    token = uuid.uuid4().hex[:8]  # task keys are global on a shared Dask scheduler
    futures = {
        pool.submit(
            run_one, r.run_id, r.scenario, name, log_level, key=f"hotremove-{r.run_id}-{token}"
        ): r
        for r in runs
    }
    lost: list[Lost] = []
    for future in pool.as_completed(list(futures)):
        run = futures[future]
        try:
            row = future.result()
        except Exception as exc:  # the worker, not the run: BrokenProcessPool, KilledWorker
            lost.append(Lost(run, " ".join(f"{type(exc).__name__}: {exc}".split())))
            continue
        on_row(run, row)
    return lost
