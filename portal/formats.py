"""French formats, through Babel: dates in Europe/Paris, numbers, sizes of files.

One function per kind of value, used by the pages, the e-mails and the CSV files alike, so
that one instant reads the same everywhere (Babel truncates to the minute, never rounds).
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from zoneinfo import ZoneInfo

from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.numbers import format_decimal
from babel.units import format_unit

LOCALE = "fr_FR"
PARIS = ZoneInfo("Europe/Paris")
_UNITS = (
    (1024**3, "digital-gigabyte"),
    (1024**2, "digital-megabyte"),
    (1024, "digital-kilobyte"),
)


def datetime_fr(value: datetime | None, *, at: str = " à ", tz: tzinfo = PARIS) -> str:
    """`23/11/2026 à 10:05` in Paris time, or *tz*'s (`—` for none); *at* separates day and time."""
    if value is None:
        return "—"
    pattern = "dd/MM/yyyy" + (f"'{at}'" if at.strip() else at) + "HH:mm"
    return _format_datetime(value, pattern, tzinfo=tz, locale=LOCALE)


def date_fr(value: date | None) -> str:
    """`23/11/2026` (`—` for none)."""
    if value is None:
        return "—"
    return _format_date(value, "dd/MM/yyyy", locale=LOCALE)


def number_fr(value: float) -> str:
    """`12 345` or `3,5`: French separators (narrow no-break space, decimal comma)."""
    return format_decimal(value, locale=LOCALE)


def size_fr(size: int) -> str:
    """A size as people read it in France: `2,0 Go`, `80,0 Mo`, `12,5 ko`, `512 octets`.

    Multiples of 1024, as file managers count them, with the French unit names.
    """
    for factor, unit in _UNITS:
        if size >= factor:
            return format_unit(size / factor, unit, length="short", locale=LOCALE, format="#,##0.0")
    return f"{number_fr(size)} octet{'s' if size > 1 else ''}"
