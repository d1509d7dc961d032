"""``hotremove cache list`` and ``hotremove cache clear``: the image cache (docs/image-cache.md).

Runs take their filesystem images from a cache (``$HOTREMOVE_CACHE/images``, else
``~/.cache/hotremove/images``), bounded by ``HOTREMOVE_CACHE_LIMIT`` with least-recently-used
eviction; every entry is checksummed and made again when found damaged
(:mod:`hotremove.workload.imagecache`). The kernels ``hotremove kernel fetch`` caches are not
touched here.
"""

from __future__ import annotations

import datetime

import click
from rich.table import Table
from rich.text import Text

from hotremove.cli.base import Command, Group
from hotremove.cli.output import emit_json, print_table, print_text, stdout_console
from hotremove.cli.settings import begin, shared_options
from hotremove.units import format_size
from hotremove.workload import default_image_cache
from hotremove.workload.imagecache import cache_limit, check_cache_dir, clear, entries


@click.group("cache", cls=Group)
@shared_options
def cache_group() -> None:
    """The image cache: list its entries, or clear it (runs make the images again)."""


@cache_group.command("list", cls=Command)
@click.option("--json", "json_out", is_flag=True, help="Print the entries as one JSON object.")
@shared_options
@click.pass_context
def list_command(ctx: click.Context, json_out: bool) -> int:
    """The cached images, least recently used first, their size on disk and the limit."""
    settings = begin(ctx)
    where = check_cache_dir(default_image_cache())
    limit = cache_limit()
    found = entries(where)
    total = sum(e.bytes for e in found)
    if json_out:
        emit_json(
            {
                "cache": str(where),
                "limit_bytes": limit,
                "bytes": total,
                "entries": [
                    {
                        "image": e.name,
                        "bytes": e.bytes,
                        "last_used": _when(e.last_used),
                        "checksummed": e.recorded,
                    }
                    for e in found
                ],
            }
        )
        return 0
    if settings.quiet:
        return 0
    out = stdout_console()
    if found:
        table = Table(title=f"image cache {where}")
        table.add_column("image", no_wrap=True)
        table.add_column("on disk", justify="right", no_wrap=True)
        table.add_column("last used (UTC)", no_wrap=True)
        table.add_column("checksum", no_wrap=True)
        for e in found:
            table.add_row(
                e.name,
                format_size(e.bytes, sep=" "),
                _when(e.last_used),
                "recorded" if e.recorded else Text("not yet (an older entry)", style="dim"),
            )
        print_table(out, table, wide=False, keys=1)
    print_text(
        out,
        f"{len(found)} image(s), {format_size(total, sep=' ')} of a "
        f"{format_size(limit, sep=' ')} limit (HOTREMOVE_CACHE_LIMIT) in {where}",
    )
    return 0


@cache_group.command("clear", cls=Command)
@shared_options
@click.pass_context
def clear_command(ctx: click.Context) -> int:
    """Remove every cached image (and what a killed run left half made there)."""
    settings = begin(ctx)
    where = check_cache_dir(default_image_cache())
    gone = clear(where)
    if not settings.quiet:
        freed = format_size(sum(e.bytes for e in gone), sep=" ")
        click.echo(f"removed {len(gone)} image(s) ({freed}) from {where}")
    return 0


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["cache_group"]
