"""``enum migrate_mode`` and the error codes that are the interface between migration steps."""

from __future__ import annotations

import enum


class MigrateMode(enum.Enum):
    """include/linux/migrate_mode.h (MIGRATE_SYNC_NO_COPY left out: removed in ≈v6.11)."""

    ASYNC = "async"  # never blocks: trylocks only
    SYNC_LIGHT = "sync_light"  # may block, but not on I/O
    SYNC = "sync"  # blocks fully: waits for writeback and sleeps on locks (hot-remove's mode)


#: the modes' names, as scenarios and the command line spell them
MODES: tuple[str, ...] = tuple(m.value for m in MigrateMode)

#: ``remove.strategy`` values every installation knows (plugins may register more): "auto"
#: lets the plugins decide per a_ops, "writeback" forces the fallback everywhere
DEFAULT_POLICY = "auto"
WRITEBACK_POLICY = "writeback"
BUILTIN_POLICIES: tuple[str, ...] = (DEFAULT_POLICY, WRITEBACK_POLICY)


class Errno(enum.IntEnum):
    """Outcomes of one migration attempt, with the kernel's negative errno values.

    ``EAGAIN`` is transient (retried next pass), ``ENOMEM`` stops the pass, anything else is a
    permanent failure for this migrate_pages() call.
    """

    OK = 0  # MIGRATEPAGE_SUCCESS
    EINTR = -4  # offline_pages: "signal backoff"
    EIO = -5
    EAGAIN = -11
    ENOMEM = -12
    EBUSY = -16
    EINVAL = -22
    EOPNOTSUPP = -95
    #: not a kernel errno: the strategy raised a Python exception (a plugin bug)
    EPLUGIN = -1000

    @property
    def label(self) -> str:
        if self is Errno.EPLUGIN:
            return "plugin-error"
        return "ok" if self is Errno.OK else f"-{self.name}"
