"""The kernels hotremove models: each version is data plus a few small rules.

A version says how its ``offline_pages`` and ``migrate_pages`` run and what its fallback does
with a dirty page. *Which* a_ops a file gets in it (which driver mounts an image) is its
filesystem type's to say (``FilesystemType.aops(cfg, kernel)``), and *which*
``migrate_folio`` each a_ops gets the strategy plugins': ``hotremove_migrate_strategy``
receives the :class:`Kernel` it answers for (``hotremove kernels`` lists their answers with
their sources). Every rule cites the kernel function it comes from and the release that made
it so.

* ``2004`` — IWAMOTO Toshihiro's hot-remove patchset (linux-2.6.7, "rebinding buffer_head to
  new(remapped) page", linux-kernel, 15 July 2004): ext2 rebinds with the seed's
  ``remap_move_buffer_ext2``, ext3 "with trivial changes", everything else is written back
  first. ``remap_preparepage`` retries a bounded number of times, so an offline gives up after
  ``remove.max_rounds`` rounds instead of looping.
* ``5.10`` — Debian 11's Linux 5.10 (5.10.0-32): the ``migratepage`` era (the callbacks are
  ``buffer_migrate_page``, ``fallback_migrate_page``; renamed to ``*_folio`` in v6.0). Its
  ``migrate_pages`` and fallback behave as 6.1's below (read in mm/migrate.c of v5.10.13:
  ``migrate_pages()`` calls ``unmap_and_move(..., pass > 2, ...)`` ten times, no batching;
  ``fallback_migrate_page()`` calls ``writeout()`` in MIGRATE_SYNC only).
* ``6.1`` — Debian 12's Linux 6.1: ``migrate_pages`` is the classic loop of ten passes whose
  page lock and writeback waits are forced only from pass 3 (``force = pass > 2``); the
  fallback writes a dirty page with ``writeout()``; ext4's ``data=journal`` a_ops has no
  ``migrate_folio``.
* ``6.12`` — Debian 12's Linux 6.12 (bookworm-security): ``migrate_pages_batch`` (≥ 6.3):
  batches of at most 512 base pages, three ASYNC passes per batch, then each leftover folio
  alone in the requested mode for seven passes; ``ext4_journalled_aops`` migrate with
  ``buffer_migrate_folio_norefs``; in MIGRATE_SYNC_LIGHT a locked folio or buffer that is not
  uptodate (I/O in flight) is not waited for (v6.5).
* ``7.2`` — Debian's Linux 7.2 (sid, 7.2.13): as 6.12, except that ``fallback_migrate_folio``
  no longer writes anything — a dirty folio is ``-EBUSY`` in every mode (7ee3647243e5
  "migrate: Remove call to ->writepage", v6.16; the Debian binary carries its WARN string
  "%ps does not implement migrate_folio").

5.10 and later loop in ``offline_pages`` until every page is gone or a signal arrives
(``remove.timeout`` simulated seconds, then -EINTR). What changed between the versions without
changing an outcome hotremove can see is listed in docs/kernels.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

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
#: ``writeout``: v2.6.16–v6.15 ``writeout()`` — queue ``->writepage`` (WB_SYNC_NONE), return
#: -EAGAIN; a later pass finds it under writeback (SYNC waits) or clean, and moves it.
#: ``ebusy``: ≥ v6.16 (7ee3647243e5 "migrate: Remove call to ->writepage") — -EBUSY always.
FallbackDirty = Literal["writeout_sync", "writeout", "ebusy"]


class Rule(NamedTuple):
    """One rule of a kernel version and where it comes from (function, file, release)."""

    text: str
    source: str


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
    #: MIGRATE_SYNC_LIGHT does not wait for a locked folio or buffer that is not uptodate
    #: (I/O in flight) — ``migrate_folio_unmap``, ``buffer_migrate_lock_buffers`` since v6.5
    #: ("migrate_pages: Avoid blocking for IO in MIGRATE_SYNC_LIGHT"); before, it waited
    sync_light_skips_io: bool = True
    #: a sentence per rule that differs from the other versions, with its source
    #: (``hotremove kernels``; the filesystem types add theirs, such as which driver mounts
    #: their images)
    rules: tuple[Rule, ...] = ()

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def at_least(self, version: str) -> bool:
        """``LINUX_VERSION_CODE >= KERNEL_VERSION(...)``: for plugins that answer per version."""
        return self.key >= tuple(int(part) for part in version.split("."))

    @property
    def folios(self) -> bool:
        """Whether the a_ops callback is ``->migrate_folio`` (v6.0, "fs: Add
        aops->migrate_folio"); before it, ``->migratepage`` and the ``*_page`` helpers."""
        return self.version == "2004" or self.at_least("6.0")

    def __str__(self) -> str:
        return self.version


#: rules every kernel from 5.10 on shares, with their sources
_UNTIL_SIGNAL = Rule(
    "offline_pages: retries until a signal (remove.timeout → -EINTR)",
    "mm/memory_hotplug.c offline_pages(), v4.15 (72b39cfc4d75, ecde0f3e7f9e)",
)
_CLASSIC = Rule(
    "migrate_pages: 10 passes; page lock and writeback waits forced from pass 3",
    "mm/migrate.c migrate_pages(): unmap_and_move(..., pass > 2), until v6.2",
)
_BATCHED = Rule(
    "migrate_pages_sync: 3 ASYNC passes per batch of 512, then each failed folio alone for 7 "
    "passes",
    "mm/migrate.c migrate_pages_batch(), migrate_pages_sync(), v6.3",
)
_WRITEOUT = Rule(
    "fallback_migrate_folio: writeout() queues the dirty page and returns -EAGAIN",
    "mm/migrate.c fallback_migrate_folio() → writeout(), until v6.15",
)
_SYNC_LIGHT_WAITS = Rule(
    "MIGRATE_SYNC_LIGHT waits for a locked folio or buffer even while its read is in flight",
    "mm/migrate.c __unmap_and_move(), buffer_migrate_lock_buffers(), until v6.4",
)

KERNELS: dict[str, Kernel] = {
    k.version: k
    for k in (
        Kernel(
            version="2004",
            title="the 2004 seed (linux-2.6.7 + IWAMOTO's hot-remove patchset)",
            passes="seed",
            fallback_dirty="writeout_sync",
            retry_until_signal=False,
            sync_light_skips_io=False,
            rules=(
                Rule(
                    "remap_preparepage: a dirty page on an unsupported filesystem is written "
                    "back and waited for, then its buffers are freed",
                    "mm/memhotplug.c remap_preparepage(), 2004 patchset",
                ),
                Rule(
                    "the offline gives up after remove.max_rounds rounds (bounded retries)",
                    "mm/memhotplug.c remap_onepage() retries, 2004 patchset",
                ),
            ),
        ),
        Kernel(
            version="5.10",
            title="Debian Linux 5.10",
            passes="classic",
            fallback_dirty="writeout",
            retry_until_signal=True,
            sync_light_skips_io=False,
            rules=(
                _CLASSIC,
                Rule(
                    "fallback_migrate_page: writeout() queues the dirty page and returns -EAGAIN",
                    "mm/migrate.c fallback_migrate_page() → writeout(), v2.6.16",
                ),
                _SYNC_LIGHT_WAITS,
                _UNTIL_SIGNAL,
            ),
        ),
        Kernel(
            version="6.1",
            title="Debian Linux 6.1",
            passes="classic",
            fallback_dirty="writeout",
            retry_until_signal=True,
            sync_light_skips_io=False,
            rules=(_CLASSIC, _WRITEOUT, _SYNC_LIGHT_WAITS, _UNTIL_SIGNAL),
        ),
        Kernel(
            version="6.12",
            title="Debian Linux 6.12",
            passes="batched",
            fallback_dirty="writeout",
            retry_until_signal=True,
            rules=(_BATCHED, _WRITEOUT, _UNTIL_SIGNAL),
        ),
        Kernel(
            version="7.2",
            title="Debian Linux 7.2",
            passes="batched",
            fallback_dirty="ebusy",
            retry_until_signal=True,
            rules=(
                _BATCHED,
                Rule(
                    "fallback_migrate_folio: a dirty folio is -EBUSY in every mode; nothing is "
                    "written",
                    "mm/migrate.c fallback_migrate_folio(), v6.16 (7ee3647243e5)",
                ),
                _UNTIL_SIGNAL,
            ),
        ),
    )
}

#: the newest modelled version: what a scenario without ``[kernel] version`` runs
DEFAULT_KERNEL = "7.2"
VERSIONS: tuple[str, ...] = tuple(KERNELS)


def get_kernel(version: str) -> Kernel:
    """The modelled kernel ``version``; anything else is a one-line error naming the known."""
    try:
        return KERNELS[str(version)]
    except KeyError:
        raise ScenarioError(
            f"kernel.version: unknown kernel {version!r} (modelled: {', '.join(VERSIONS)})"
        ) from None


__all__ = ["DEFAULT_KERNEL", "KERNELS", "VERSIONS", "Kernel", "Rule", "get_kernel"]
