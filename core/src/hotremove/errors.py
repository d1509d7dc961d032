"""Exceptions that carry a one-line message for the user.

The CLI turns every :class:`HotremoveError` into one line on stderr and exit status 2;
anything else is a bug in hotremove and may show a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HotremoveError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ScenarioError(HotremoveError):
    """A scenario file is malformed or names an impossible value (the message names the key)."""


class WorkloadError(ScenarioError):
    """The scenario passed validation but the machine cannot hold it (names the key)."""


class ToolMissing(HotremoveError):
    """A host program a filesystem type needs is not installed (the message names the Debian
    package that provides it)."""


class ImageError(HotremoveError):
    """A filesystem image could not be created or read."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
