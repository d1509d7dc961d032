"""What an operator could do about a block the plan says cannot go, and the plan after it.

* ``fsfreeze`` (``--freeze`` then ``--unfreeze`` the filesystem) — when what fails to
  migrate is page cache jbd2 still holds (6.12's ``buffer_migrate_folio_norefs`` gives up on
  buffers with a journal_head). Freezing syncs the filesystem and flushes the journal
  (``jbd2_journal_flush``: every transaction checkpointed, the journal_heads go). A plain
  ``sync`` is a matter of timing once the pages' transaction has committed (the 5 s commit
  interval): it writes them home, but only a later commit (or a flush) cleans the checkpoint
  list and drops the journal_heads. Measured with ``hotremove kernel plan-check`` on 6.12,
  three boots of the same scenario: after ``sync`` (424 pages written, nr_dirty 0) the block
  failed again with the same 418 pages twice (-EINTR after 10 s) and offlined in 0.1 s once.
  So the plan says ``sync_alone: None`` (depends on timing) for journal-held page cache.
* ``sync`` — when other dirty page cache is what fails to migrate.
* ``nothing`` — slab, page tables, reserved or pinned memory, holes, mixed zones and too
  little free memory elsewhere yield to nothing an operator can run.

Also the warning for what the page flags cannot show: on such a kernel a *clean* page with
buffers written since jbd2 last cleaned its checkpoint list is journal-held too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hotremove.hooks import Hooks
from hotremove.kernels import Kernel, get_kernel
from hotremove.realmachine.classes import decode_unit, unit_code, unit_name
from hotremove.realmachine.kpageflags import KPF_ANON, KPF_DIRTY, KPF_SWAPBACKED, KPF_WRITEBACK
from hotremove.realmachine.plan import BlockPlan, Plan, plan
from hotremove.realmachine.probe import probe_units
from hotremove.realmachine.snapshot import Snapshot
from hotremove.realmachine.synthesize import K_ANON, K_FILE_DIRTY_BH, FsSpec


def advise(p: Plan, hooks: Hooks) -> Plan:
    """Add to ``p``'s blocks the warnings the page flags call for and, for every block that
    cannot go, a remedy with the plan after it. Returns ``p``."""
    kernel = get_kernel(p.kernel)
    journal_warnings(p.blocks, p.fs, hooks, p.device, p.policy, kernel)
    add_remedies(
        p.blocks,
        p.snapshot,
        hooks,
        fs=p.fs,
        device=p.device,
        policy=p.policy,
        flagless=p.flagless,
        kernel=kernel,
    )
    return p


def journal_warnings(
    blocks: list[BlockPlan], fs: FsSpec, hooks: Hooks, device: str, policy: str, kernel: Kernel
) -> None:
    """Where this kernel cannot migrate a page whose buffers jbd2 still references (6.12's
    ``buffer_migrate_folio_norefs``; the probe of a journalled dirty page says so), a
    *clean* page with buffers may be held too: written since the journal last cleaned its
    checkpoint list (the flusher wrote it home, the journal_head stayed). Its page flags are
    those of any clean page with buffers, so the plan warns instead of guessing."""
    if fs.data_mode != "journal":
        return
    code = unit_code(K_FILE_DIRTY_BH)
    probe = probe_units([code], fs, hooks, device=device, policy=policy, kernel=kernel)[code]
    if not (probe.failed and "jbd2" in probe.reason):
        return
    for bp in blocks:
        clean = bp.classes.get("file_buffers", 0)
        if bp.state == "online" and clean and not bp.blockers and bp.zone != "none":
            bp.warnings.append(
                f"{clean} clean page-cache pages with buffers: any written since jbd2 last "
                "cleaned its checkpoint list are still journal-held and will not move "
                "(the flags cannot tell); freeze and thaw the filesystem first to be sure"
            )


#: Page flags a ``sync`` clears on page cache: it writes every dirty page and, for a
#: journalled filesystem, commits and checkpoints the journal (the journal_heads go).
_SYNC_CLEARS = (1 << KPF_DIRTY) | (1 << KPF_WRITEBACK)


def add_remedies(blocks: list[BlockPlan], snap: Snapshot, hooks: Hooks, **options: Any) -> None:
    """For every block that cannot go (module doc): ``fsfreeze`` when journal-held page cache
    is what fails to migrate, ``sync`` when other dirty page cache is, else ``nothing``. The
    plan after ``sync``/``fsfreeze`` is the plan of the same snapshot with the page cache
    clean. ``sync_alone`` says whether a plain ``sync`` would do (None: it depends on timing)."""
    after: Plan | None = None
    mounts = [m.mountpoint for m in snap.mounts if m.fstype == options["fs"].type]
    for bp in blocks:
        if bp.offlinable:
            if bp.warnings:  # may be journal-held: the flags cannot tell
                bp.remedy = {
                    "action": "fsfreeze",
                    "mounts": mounts,
                    "why": "precaution: clean page cache may still be journal-held",
                    "offlinable": True,
                    "sync_alone": True,
                    "migrated": bp.migrated,
                    "written_back": 0,
                }
            continue
        if bp.reason_class == "migration" and _file_failures_only(bp):
            if after is None:
                after = plan(_synced(snap), hooks, **options)
            later = after.block(bp.index)
            journal = bp.journal_held
            bp.remedy = {
                "action": "fsfreeze" if journal else "sync",
                "mounts": mounts if journal else [],
                "why": (
                    "journal-held page cache: --freeze then --unfreeze flushes the journal; "
                    "sync alone only if a jbd2 commit follows it"
                    if journal
                    else "dirty page cache: sync writes it"
                ),
                "offlinable": later.offlinable,
                # journal-held: a sync helps only if a jbd2 commit follows its writeback
                "sync_alone": None if journal else later.offlinable,
                "reasons": list(later.reasons),
                "migrated": later.migrated,
                "written_back": later.written_back,
            }
        else:
            bp.remedy = {
                "action": "nothing",
                "why": f"{bp.reason_class}: not page cache an operator can clean",
                "offlinable": False,
                "sync_alone": False,
                "reasons": list(bp.reasons),
                "migrated": 0,
                "written_back": 0,
            }


def _file_failures_only(bp: BlockPlan) -> bool:
    return all(
        decode_unit(code)[0] != K_ANON
        for code in bp.units
        if any(r.startswith("migration fails") and unit_name(code) in r for r in bp.reasons)
    )


def _synced(snap: Snapshot) -> Snapshot:
    """``snap`` as it would be after ``sync``: page cache (not anonymous memory) clean."""
    anon = (snap.flags & np.uint64((1 << KPF_ANON) | (1 << KPF_SWAPBACKED))) != 0
    flags = np.where(anon, snap.flags, snap.flags & ~np.uint64(_SYNC_CLEARS))
    return Snapshot(
        block_size=snap.block_size,
        blocks=list(snap.blocks),
        flags=flags,
        counts=snap.counts,
        mounts=list(snap.mounts),
        kernel=snap.kernel,
        taken=snap.taken,
        source=snap.source,
        meminfo=dict(snap.meminfo),
        note="after sync (predicted)",
    )
