"""Exceptions that carry a one-line message for the user.

The CLI turns every :class:`HotremoveError` into one line on stderr and exit status 2;
anything else is a bug in hotremove and may show a traceback.
"""

from __future__ import annotations


class HotremoveError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ScenarioError(HotremoveError):
    """A scenario file is malformed or names an impossible value (the message names the key)."""


class WorkloadError(ScenarioError):
    """The scenario passed validation but the machine cannot hold it (names the key)."""


class E2fsprogsMissing(HotremoveError):
    """A program from e2fsprogs (mke2fs, e2fsck, debugfs) is not installed."""


class ImageError(HotremoveError):
    """A filesystem image could not be created or read."""
