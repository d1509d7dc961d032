"""The kernels hotremove models: each version is data plus a few small rules.

A version says how its ``offline_pages`` and ``migrate_pages`` run, what its fallback does
with a dirty page, and which driver mounts which image type. *Which* ``migrate_folio`` each
a_ops gets is the plugins' to say: ``hotremove_migrate_strategy`` receives the
:class:`Kernel` it answers for (``hotremove kernels`` lists their answers). Every rule cites
the kernel function it comes from.

* ``2004`` — IWAMOTO Toshihiro's hot-remove patchset (linux-2.6.7, "rebinding buffer_head to
  new(remapped) page", linux-kernel, 15 July 2004): ext2 rebinds with the seed's
  ``remap_move_buffer_ext2``, ext3 "with trivial changes", everything else is written back
  first. ``remap_preparepage`` retries a bounded number of times, so an offline gives up after
  ``remove.max_rounds`` rounds instead of looping.
* ``6.1`` — Debian's Linux 6.1: ``migrate_pages`` is the classic loop of ten passes whose page
  lock and writeback waits are forced only from pass 3 (``force = pass > 2``); the fallback
  writes a dirty page with ``writeout()``; ext4's ``data=journal`` a_ops has no
  ``migrate_folio``.
* ``6.12`` — Debian's Linux 6.12: ``migrate_pages_batch`` (≥ 6.3): batches of at most 512 base
  pages, three ASYNC passes per batch, then each leftover folio alone in the requested mode
  for seven passes; ``ext4_journalled_aops`` migrate with ``buffer_migrate_folio_norefs``.

Both 6.x kernels loop in ``offline_pages`` until every page is gone or a signal arrives
(``remove.timeout`` simulated seconds, then -EINTR); ext3 images are mounted by the ext4
driver (fs/ext3 was removed in v4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hotremove.errors import ScenarioError

#: How ``migrate_pages`` runs its passes.
#: ``classic``: mm/migrate.c ``migrate_pages()`` ≤ v6.2 — up to 10 passes over the whole list,
#: ``unmap_and_move(..., force = pass > 2, mode)``.
#: ``batched``: ``migrate_pages()`` ≥ v6.3 — ``migrate_pages_batch`` over batches of
#: ``NR_MAX_BATCHED_MIGRATION``; in a sync mode ``migrate_pages_sync`` (3 ASYNC passes, then
#: every failed folio alone for 7 passes in the requested mode).
#: ``seed``: the 2004 patchset's loop as this project first modelled it — the first pass in
#: the requested mode, every later pass in SYNC, waits allowed from the first pass.
PassStyle = Literal["seed", "classic", "batched"]

#: What ``fallback_migrate_folio`` does with a dirty page in MIGRATE_SYNC.
#: ``writeout_sync``: the seed's ``remap_preparepage`` — write the page and wait, then move it.
#: ``writeout``: v6.1–v6.15 ``writeout()`` — queue ``->writepage`` (WB_SYNC_NONE), return
#: -EAGAIN; a later pass finds it under writeback (SYNC waits) or clean, and moves it.
#: ``ebusy``: ≥ v6.16 (7ee3647243e5 "migrate: Remove call to ->writepage") — -EBUSY always.
FallbackDirty = Literal["writeout_sync", "writeout", "ebusy"]


@dataclass(frozen=True)
class Kernel:
    """One modelled kernel version (see module doc)."""

    version: str
    title: str
    passes: PassStyle
    fallback_dirty: FallbackDirty
    #: ``offline_pages`` loops until a signal (v4.15+, 72b39cfc4d75 "do not fail offlining
    #: too early") instead of giving up after ``remove.max_rounds`` rounds
    retry_until_signal: bool
    #: image type → the driver that mounts it (its a_ops tables)
    drivers: dict[str, str] = field(default_factory=dict)
    #: a sentence per rule that differs from the other versions (``hotremove kernels``)
    rules: tuple[str, ...] = ()

    def driver(self, fs_type: str) -> str:
        """The filesystem driver that mounts an image of ``fs_type`` in this kernel."""
        return self.drivers.get(fs_type, fs_type)

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def at_least(self, version: str) -> bool:
        """``LINUX_VERSION_CODE >= KERNEL_VERSION(...)``: for plugins that answer per version."""
        return self.key >= tuple(int(part) for part in version.split("."))

    def __str__(self) -> str:
        return self.version


KERNELS: dict[str, Kernel] = {
    k.version: k
    for k in (
        Kernel(
            version="2004",
            title="the 2004 seed (linux-2.6.7 + IWAMOTO's hot-remove patchset)",
            passes="seed",
            fallback_dirty="writeout_sync",
            retry_until_signal=False,
            rules=(
                "remap_preparepage: a dirty page on an unsupported filesystem is written back "
                "and waited for, then its buffers are freed",
                "the offline gives up after remove.max_rounds rounds (bounded retries)",
            ),
        ),
        Kernel(
            version="6.1",
            title="Debian Linux 6.1",
            passes="classic",
            fallback_dirty="writeout",
            retry_until_signal=True,
            drivers={"ext3": "ext4"},
            rules=(
                "migrate_pages: 10 passes; page lock and writeback waits forced from pass 3",
                "fallback_migrate_folio: writeout() queues the dirty page and returns -EAGAIN",
                "offline_pages: retries until a signal (remove.timeout → -EINTR)",
                "ext3 images are mounted by ext4 (ext4_da_aops, ext4_journalled_aops)",
            ),
        ),
        Kernel(
            version="6.12",
            title="Debian Linux 6.12",
            passes="batched",
            fallback_dirty="writeout",
            retry_until_signal=True,
            drivers={"ext3": "ext4"},
            rules=(
                "migrate_pages_sync: 3 ASYNC passes per batch of 512, then each failed folio "
                "alone for 7 passes",
                "fallback_migrate_folio: writeout() queues the dirty page and returns -EAGAIN",
                "offline_pages: retries until a signal (remove.timeout → -EINTR)",
                "ext3 images are mounted by ext4 (ext4_da_aops, ext4_journalled_aops)",
            ),
        ),
    )
}

#: the newest modelled version: what a scenario without ``[kernel] version`` runs
DEFAULT_KERNEL = "6.12"
VERSIONS: tuple[str, ...] = tuple(KERNELS)


def get_kernel(version: str) -> Kernel:
    """The modelled kernel ``version``; anything else is a one-line error naming the known."""
    try:
        return KERNELS[str(version)]
    except KeyError:
        raise ScenarioError(
            f"kernel.version: unknown kernel {version!r} (modelled: {', '.join(VERSIONS)})"
        ) from None


__all__ = ["DEFAULT_KERNEL", "KERNELS", "VERSIONS", "Kernel", "get_kernel"]
