"""Durations and sizes for people: the one formatter the report, the tables and the plan use."""

from __future__ import annotations

_SIZE_UNITS = (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10))


def format_seconds(
    value: float | None, *, zero: str | None = None, grouping: bool = False, none: str = "—"
) -> str:
    """``1.25 s``, ``3.40 ms`` or ``812.5 µs``.

    ``none`` stands for a missing value, ``zero`` (when given) for exactly 0, and ``grouping``
    puts thousands separators in the seconds (``1,234.50 s``).
    """
    if value is None:
        return none
    if zero is not None and value == 0:
        return zero
    if value >= 1:
        return f"{value:,.2f} s" if grouping else f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def format_size(n: int, *, sep: str = "") -> str:
    """Bytes in the largest binary unit they fill: ``512MiB``, ``1.5GiB`` (``sep=" "``:
    ``512 MiB``)."""
    for unit, shift in _SIZE_UNITS:
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:g}{sep}{unit}" if value == int(value) else f"{value:.1f}{sep}{unit}"
    return f"{n}{sep}B"


__all__ = ["format_seconds", "format_size"]
