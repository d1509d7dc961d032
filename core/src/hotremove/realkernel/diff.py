"""Simulator against real kernel: one row per measurable quantity, with a stated tolerance.

A pure function of two report dicts (the simulator's :meth:`Report.as_dict` and the guest's
:meth:`GuestReport.as_dict`), so it is tested without booting anything. The tolerances say
what "the same" means given what the guest cannot mirror:

* ``offlined``, ``verify`` (files byte-equal after remount) and ``files_checked``: exact.
* ``migrated``: within 2 % — plus the pages in the region the simulator does not have
  (:func:`unmodelled_pages`): the guest's own (its shell's anonymous memory, kernel
  allocations: ``other_pages_in_region``) and page-cache pages beyond the scenario's files'
  (5.10 keeps 64 more page-cache pages in the block for ``ext2-small`` than its 64 files
  hold — metadata read through the block device, ``Buffers`` in /proc/meminfo grows by as
  much; 7.2 keeps none there), which the kernel moves too.
* ``written_back``: within 1 % or 8 pages, whichever is larger (the kernel's ``nr_written``
  also counts a stray metadata page written during the offline).
* ``held``: page-cache pages left in the blocks that did not go (the guest's kpageflags scan
  right after the failed offline; the simulator's pages that never moved) within 10 % or 16
  pages. On 6.12 ``data=journal`` these are the pages jbd2 still holds: a checkpoint releases
  whole transactions, so the count moves by one transaction's pages with where the guest's
  5 s commits fell among its writes — known to the simulator (which replays the guest's
  write phase, file after file) only to about a file.
* ``failed``: both zero or both non-zero — the kernel counts failed *attempts*
  (``pgmigrate_fail`` grows on every pass of ``offline_pages``), the simulator failed pages.
* Per block, when several are removed (the guest offlines them one by one in
  ``remove.order``, as the simulator does): ``offlined`` exact, ``migrated`` within 2 % plus
  the guest's own pages in that block just before its offline (those that moved into it from
  earlier blocks included), ``written_back`` within 1 % or 8 pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """How one metric is compared, and the sentence that says so."""

    metric: str
    tolerance: str
    agree: Callable[[Any, Any, dict[str, Any]], bool]
    simulated: Callable[[dict[str, Any]], Any]
    real: Callable[[dict[str, Any]], Any]


def _exact(sim: Any, real: Any, _ctx: dict[str, Any]) -> bool:
    return bool(sim == real)


def _within(rel: float, floor: int = 0, slack_key: str | None = None) -> Callable[..., bool]:
    def check(sim: Any, real: Any, ctx: dict[str, Any]) -> bool:
        if sim is None or real is None:
            return False
        slack = int(ctx.get(slack_key, 0) or 0) if slack_key else 0
        allowed = max(rel * max(abs(sim), abs(real)), floor) + slack
        return abs(sim - real) <= allowed

    return check


def _both_or_neither(sim: Any, real: Any, _ctx: dict[str, Any]) -> bool:
    return bool(sim) == bool(real)


def _failed_count(report: dict[str, Any]) -> int:
    failed = report.get("failed", 0)
    return len(failed) if isinstance(failed, list) else int(failed or 0)


def _held_sim(report: dict[str, Any]) -> int:
    """The simulator's pages that never moved out of a block that did not go."""
    if report.get("offlined"):
        return 0
    return _failed_count(report)


def _held_real(report: dict[str, Any]) -> Any:
    return report.get("held")


def _verify(key: str) -> Callable[[dict[str, Any]], Any]:
    def get(report: dict[str, Any]) -> Any:
        verify = report.get("verify") or {}
        return verify.get(key)

    return get


RULES: tuple[Rule, ...] = (
    Rule("offlined", "exact", _exact, lambda s: s.get("offlined"), lambda r: r.get("offlined")),
    Rule(
        "migrated",
        "within 2 % + the pages in the region the simulator does not have",
        _within(0.02, slack_key="unmodelled_pages"),
        lambda s: s.get("migrated"),
        lambda r: r.get("migrated"),
    ),
    Rule(
        "written_back",
        "within 1 % or 8 pages",
        _within(0.01, floor=8),
        lambda s: s.get("written_back"),
        lambda r: r.get("written_back"),
    ),
    Rule(
        "held",
        "within 10 % or 16 pages",
        _within(0.10, floor=16),
        _held_sim,
        _held_real,
    ),
    Rule(
        "failed",
        "both zero or both non-zero (kernel: attempts, simulator: pages)",
        _both_or_neither,
        _failed_count,
        _failed_count,
    ),
    Rule("verify.ok", "exact", _exact, _verify("ok"), _verify("ok")),
    Rule(
        "verify.files_checked",
        "exact",
        _exact,
        _verify("files_checked"),
        _verify("files_checked"),
    ),
)


#: the simulator report's a_ops rows that are not page cache
_NOT_PAGE_CACHE = ("anon", "swap_aops")


def unmodelled_pages(simulated: dict[str, Any], real: dict[str, Any]) -> int:
    """Pages in the guest's region that the simulator does not have: the guest's own (not page
    cache) plus page-cache pages beyond the simulated files' pages in the region."""
    sim_cache = sum(
        int(row.get("pages", 0))
        for name, row in (simulated.get("per_aops") or {}).items()
        if name not in _NOT_PAGE_CACHE
    )
    extra_cache = max(0, int(real.get("file_pages_in_region") or 0) - sim_cache)
    return int(real.get("other_pages_in_region") or 0) + extra_cache


def _row(
    rule: Rule, simulated: dict[str, Any], real: dict[str, Any], ctx: dict[str, Any]
) -> dict[str, Any]:
    sim_value, real_value = rule.simulated(simulated), rule.real(real)
    return {
        "metric": rule.metric,
        "simulated": sim_value,
        "real": real_value,
        "tolerance": rule.tolerance,
        "agree": rule.agree(sim_value, real_value, ctx),
    }


def _guest_pages(block: dict[str, Any]) -> int:
    """Used pages of a guest block that are not page cache, in the last scan before its
    own offline (``prior``; ``before`` for the first)."""
    classes = block.get("prior") or block.get("before") or {}
    return max(0, int(classes.get("used", 0)) - int(classes.get("file", 0)))


def block_rules(block: int) -> tuple[Rule, ...]:
    """The per-block rules of ``block`` (the scenario's index), applied to one simulator
    ``per_block`` entry and the guest's entry for the same block."""
    name = f"block {block}"
    return (
        Rule(
            f"{name}.offlined",
            "exact",
            _exact,
            lambda s: s.get("offlined"),
            lambda r: r.get("offlined"),
        ),
        Rule(
            f"{name}.migrated",
            "within 2 % + the guest's own pages in the block",
            _within(0.02, slack_key="guest_pages"),
            lambda s: s.get("migrated"),
            lambda r: r.get("migrated"),
        ),
        Rule(
            f"{name}.written_back",
            "within 1 % or 8 pages",
            _within(0.01, floor=8),
            lambda s: s.get("written_back"),
            lambda r: r.get("written_back"),
        ),
    )


def compare(simulated: dict[str, Any], real: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per rule: {metric, simulated, real, tolerance, agree}; with several blocks,
    the per-block rows follow, in the order the blocks were offlined."""
    ctx = {**real, "unmodelled_pages": unmodelled_pages(simulated, real)}
    rows = [_row(rule, simulated, real, ctx) for rule in RULES]
    sim_blocks = simulated.get("per_block") or []
    real_blocks = {b.get("block"): b for b in real.get("per_block") or [] if not b.get("action")}
    if len(sim_blocks) < 2 and len(real_blocks) < 2:
        return rows
    order = [b.get("block") for b in sim_blocks] or list(real_blocks)
    sims = {b.get("block"): b for b in sim_blocks}
    for block in order + [b for b in real_blocks if b not in order]:
        sim_b = sims.get(block, {})
        real_b = dict(real_blocks.get(block, {}))
        real_b["guest_pages"] = _guest_pages(real_b)
        rows.extend(_row(rule, sim_b, real_b, real_b) for rule in block_rules(int(block)))
    return rows


def all_agree(rows: list[dict[str, Any]]) -> bool:
    return all(row["agree"] for row in rows)
