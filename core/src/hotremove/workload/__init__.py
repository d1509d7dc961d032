"""Scenario → populated machine, and the golden model (see :mod:`hotremove.workload.build`).

``images`` makes and caches the real filesystem images; ``pagecache`` reads their files into
frames with buffer_heads and writes into cached pages; ``anon`` adds anonymous memory and huge
pages; ``planted`` adds the page states migration must cope with; ``golden`` keeps what the
disk must hold; ``build`` puts them together in the order a booted system would.
"""

from __future__ import annotations

from hotremove.errors import WorkloadError
from hotremove.workload.anon import THP_VPN_BASE, add_anon_folio, add_to_swap_cache
from hotremove.workload.build import Built, build
from hotremove.workload.golden import Golden, digest
from hotremove.workload.images import (
    IMAGE_FORMAT,
    cached_image,
    default_image_cache,
    file_contents,
)
from hotremove.workload.pagecache import FrameAllocator, page_cache_write, write_extents
from hotremove.workload.planted import lock_buffer_elsewhere, pin_page

__all__ = [
    "IMAGE_FORMAT",
    "THP_VPN_BASE",
    "Built",
    "FrameAllocator",
    "Golden",
    "WorkloadError",
    "add_anon_folio",
    "add_to_swap_cache",
    "build",
    "cached_image",
    "default_image_cache",
    "digest",
    "file_contents",
    "lock_buffer_elsewhere",
    "page_cache_write",
    "pin_page",
    "write_extents",
]
