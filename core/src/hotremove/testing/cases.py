"""What the conformance suite runs and reports: cases, their runs, the capabilities a plugin may
declare it lacks, and which probe rules and engine checks each of its tests looks at."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hotremove import hookimpl
from hotremove.testing.helpers import EngineRun

if TYPE_CHECKING:
    from hotremove.model.buffer_head import BufferHead
    from hotremove.model.machine import Machine
    from hotremove.sim.verify import Verdict

MODES = ("async", "sync_light", "sync")
#: A policy name no plugin registers: every plugin but a fallback must answer ``None``.
FOREIGN_POLICY = "conformance-foreign-policy"
FOREIGN_AOPS = "conformance_foreign_aops"

#: What a plugin is expected to do unless it declares otherwise (``unsupported``).
CAPABILITIES = {
    "entry_point": "is installed through an entry point in group 'hotremove'",
    "not_mine_is_none": "answers None for a_ops and policies it does not claim",
    "rebinding": "moves pages that carry buffer_heads by rebinding them (no I/O)",
    "first_pass": "moves every page of its a_ops in the first pass, in every mode",
    "contention": "waits for buffers locked by I/O (SYNC) or backs off (ASYNC)",
    "conformance": "passes the suite at all (declare it for a case that reproduces a bug)",
    "answers": (
        "answers with a strategy for every a_ops it claims, in the suite's kernel (declare it "
        "for a table that kernel gives no migrate_folio: the plugin must then answer None, "
        "and the fallback's runs are not the plugin's to test)"
    ),
}

#: Which probe rules and engine checks each test looks at (see hotremove.testing.probe.RULES).
DATA_RULES = {"data", "flags", "page_cache", "unchanged_on_error", "raised"}
BUFFER_RULES = {"block_map", "bh_state", "bh_page", "under_io"}
LOCK_RULES = {"async_sleep", "sync_light_io", "bh_lock", "b_count"}
BUFFER_CHECKS = {"bh_page", "bh_state"}
LOCK_CHECKS = {"spinlock", "page_lock", "bh_lock", "refcount"}

LOCKDEP_MISSING = (
    "lock-order checker not available in this version of hotremove (hotremove.locking.lockdep."
    "checking); the suite's runs use it once it exists"
)
EXPLORER_MISSING = (
    "interleaving explorer not available in this version of hotremove "
    "(hotremove.explore.Explorer); the bounded exploration runs once it exists"
)


@dataclass(frozen=True)
class Case:
    """One way to exercise a plugin: files of ``fs_type`` mounted with ``options`` get
    ``a_ops``; the offline runs under ``policy``."""

    fs_type: str
    a_ops: str
    options: tuple[str, ...] = ()
    policy: str = "auto"

    @property
    def id(self) -> str:
        return self.a_ops if self.policy == "auto" else f"{self.a_ops}@{self.policy}"


@dataclass
class CaseRun:
    """One engine run of a case in a mode, and the verification of the images after it."""

    case: Case
    mode: str
    run: EngineRun
    verdict: Verdict
    contended: list[BufferHead] = field(default_factory=list)

    def problems(self, rules: set[str]) -> list[str]:
        return [p.message for p in self.run.contract_problems if p.rule in rules]

    def failures(
        self, kinds: set[str] | None = None, *, exclude: Set[str] = frozenset()
    ) -> list[str]:
        """The engine's own per-page and end-of-run check failures, of ``kinds``."""
        return [
            f"engine check {f.check!r}: pfn {f.pfn:#x}: {_explain(f.message)}"
            for f in self.run.check_failures
            if (kinds is None or f.check in kinds) and f.check not in exclude
        ]


def _explain(message: str) -> str:
    """Name the bits an engine check message gives in hex: ``flags: 0x.. -> 0x..`` (page)
    or ``<BufferHead ... state=<BH...: N> ...> state was 0x..`` (buffer)."""
    from hotremove.model.buffer_head import BH
    from hotremove.model.page import PG

    if match := re.search(r"(0x[0-9a-f]+) -> (0x[0-9a-f]+)", message):
        old, new = (int(x, 16) for x in match.groups())
        prefix, flags = "PG_", list(PG)
    elif match := re.search(r": (\d+)>.*state was (0x[0-9a-f]+)", message):
        new, old = int(match.group(1)), int(match.group(2), 16)
        prefix, flags = "BH_", list(BH)
    else:
        return message
    lost = "|".join(f"{prefix}{f.name}" for f in flags if f & old & ~new)
    gained = "|".join(f"{prefix}{f.name}" for f in flags if f & new & ~old)
    parts = [f"lost {lost}" if lost else "", f"gained {gained}" if gained else ""]
    return f"{message} ({', '.join(p for p in parts if p)})"


class CaseUnavailable(Exception):
    """This hotremove cannot build the case (the reason becomes a visible skip)."""


def find_explorer() -> Callable[..., Any] | None:
    """The interleaving explorer (``hotremove.explore.Explorer``), when this hotremove has
    one: ``Explorer(machine, hooks, blocks, *, mode, policy, golden)`` with
    ``explore(seed, schedules) -> result`` (``result.problems``) and ``close()``."""
    try:
        module = importlib.import_module("hotremove.explore")
    except ModuleNotFoundError as exc:
        if exc.name not in ("hotremove.explore", "hotremove"):
            raise
        return None
    return getattr(module, "Explorer", None)


class IoCompletion:
    """Background work that completes the simulated I/O holding buffers locked."""

    def __init__(self, inflight: set[BufferHead]) -> None:
        self.inflight = inflight

    def complete(self, bh: object) -> bool:
        from hotremove.model.buffer_head import BH_Lock

        if bh not in self.inflight:
            return False
        self.inflight.discard(bh)  # type: ignore[arg-type]
        bh.b_state &= ~BH_Lock  # type: ignore[attr-defined]  # end_buffer_write_sync
        return True

    @hookimpl
    def hotremove_background_work(self, machine: Machine, reason: str) -> None:
        for bh in list(self.inflight):
            self.complete(bh)


def carries_buffers(a_ops: str) -> bool:
    """Whether the installed types' table says pages of ``a_ops`` carry buffer_heads
    (unknown: yes)."""
    from hotremove.fs.registry import installed_types
    from hotremove.fs.tables import all_tables

    ops = all_tables(installed_types().values()).get(a_ops)
    return ops is None or ops.buffers


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


__all__ = [
    "BUFFER_CHECKS",
    "BUFFER_RULES",
    "CAPABILITIES",
    "DATA_RULES",
    "EXPLORER_MISSING",
    "FOREIGN_AOPS",
    "FOREIGN_POLICY",
    "LOCKDEP_MISSING",
    "LOCK_CHECKS",
    "LOCK_RULES",
    "MODES",
    "Case",
    "CaseRun",
    "CaseUnavailable",
    "IoCompletion",
    "canonical",
    "carries_buffers",
    "find_explorer",
]
