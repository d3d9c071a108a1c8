"""French formats through Babel: one function per kind of value, used everywhere."""

from __future__ import annotations

from datetime import UTC, date, datetime

from portal.formats import date_fr, datetime_fr, number_fr, size_fr

NNBSP = "\u202f"  # narrow no-break space: the French thousands separator and before units


def test_sizes_read_as_in_france_in_multiples_of_1024() -> None:
    assert size_fr(2 * 1024**3) == f"2,0{NNBSP}Go"
    assert size_fr(int(81920.7 * 1024)) == f"80,0{NNBSP}Mo"
    assert size_fr(12_800) == f"12,5{NNBSP}ko"
    assert size_fr(512) == "512 octets"
    assert size_fr(1) == "1 octet"


def test_numbers_use_french_separators() -> None:
    assert number_fr(1_234_567) == f"1{NNBSP}234{NNBSP}567"
    assert number_fr(3.5) == "3,5"


def test_one_instant_reads_the_same_minute_everywhere_in_paris_time() -> None:
    # Given a deposit at 16:07:59 UTC (18:07:59 in Paris, summer time)
    instant = datetime(2026, 7, 1, 16, 7, 59, 900_000, tzinfo=UTC)
    # Then pages and e-mails show 18:07 (truncated, never rounded to 18:08), CSV the same
    assert datetime_fr(instant) == "01/07/2026 à 18:07"
    assert datetime_fr(instant, at=" ") == "01/07/2026 18:07"
    assert datetime_fr(datetime(2026, 1, 15, 23, 30, tzinfo=UTC)) == "16/01/2026 à 00:30"
    assert datetime_fr(None) == "—"
    assert date_fr(date(2026, 2, 3)) == "03/02/2026"
