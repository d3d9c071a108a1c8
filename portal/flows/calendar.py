"""The flows' calendar: working days per département, CGPEM deadline, PECGM and PECDH dates.

Pure functions of (département, year, month): no database, no e-mail. "Working" means not a
Saturday, a Sunday or a public holiday of the département, from the maintained `holidays`
package, which carries the Alsace-Moselle days (Good Friday, 26 December) for 57, 67 and 68
and the overseas days of 971 to 976.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import holidays

from portal.orgs.departements import is_departement_code

PARIS: Final = ZoneInfo("Europe/Paris")
CGPEM_DEADLINE_TIME: Final = time(17, 0)

# The convention says "avant 17 h" without a place: each département's deadline is 17:00 on its
# own clock (17:00 Paris time is 11:00 or 12:00 in Guadeloupe, 20:00 or 21:00 in Réunion).
_TIME_ZONES: Final[dict[str, str]] = {
    "971": "America/Guadeloupe",
    "972": "America/Martinique",
    "973": "America/Cayenne",
    "974": "Indian/Reunion",
    "975": "America/Miquelon",  # Saint-Pierre-et-Miquelon
    "976": "Indian/Mayotte",
}
#: How pages and mails name those clocks.
TIME_ZONE_NAMES: Final[dict[str, str]] = {
    "971": "heure de la Guadeloupe",
    "972": "heure de la Martinique",
    "973": "heure de la Guyane",
    "974": "heure de La Réunion",
    "975": "heure de Saint-Pierre-et-Miquelon",
    "976": "heure de Mayotte",
}
FRIDAY: Final = 4

# Département -> subdivision of holidays.France; others get the national calendar.
_SUBDIVISIONS: Final[dict[str, str]] = {
    "57": "57",  # Moselle
    "67": "6AE",  # Bas-Rhin (Alsace)
    "68": "6AE",  # Haut-Rhin (Alsace)
    "971": "971",
    "972": "972",
    "973": "973",
    "974": "974",
    "975": "PM",  # Saint-Pierre-et-Miquelon
    "976": "976",
}


@lru_cache(maxsize=512)
def _holidays(departement: str, year: int) -> frozenset[date]:
    calendar = holidays.country_holidays("FR", subdiv=_SUBDIVISIONS.get(departement), years=year)
    return frozenset(calendar.keys())


def _check(departement: str) -> None:
    if not is_departement_code(departement):
        raise ValueError(f"invalid département code: {departement!r}")


def public_holidays(departement: str, year: int) -> frozenset[date]:
    """The public holidays of `departement` in `year`."""
    _check(departement)
    return _holidays(departement, year)


def is_working_day(departement: str, day: date) -> bool:
    """Neither a week-end nor a public holiday of `departement`."""
    _check(departement)
    return day.weekday() < 5 and day not in _holidays(departement, day.year)


def working_fridays(departement: str, year: int, month: int) -> tuple[date, ...]:
    """The Fridays of the month that are working days in `departement`."""
    _check(departement)
    first = date(year, month, 1)
    day = first + timedelta(days=(FRIDAY - first.weekday()) % 7)
    fridays: list[date] = []
    while day.month == month:
        if day not in _holidays(departement, year):
            fridays.append(day)
        day += timedelta(days=7)
    return tuple(fridays)


def nth_working_friday(departement: str, year: int, month: int, n: int) -> date:
    """The `n`-th working Friday of the month (1-based), or the last one if there are fewer.

    The convention does not say what happens when a month has fewer: Martinique in May 2026
    (1, 8 and 22 May are public holidays there) has two. The last working Friday is the
    latest date that still keeps the rule's spirit.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    fridays = working_fridays(departement, year, month)
    return fridays[min(n, len(fridays)) - 1]


def time_zone(departement: str) -> ZoneInfo:
    """The département's own clock: its overseas time zone, Europe/Paris otherwise."""
    _check(departement)
    return ZoneInfo(_TIME_ZONES.get(departement, "Europe/Paris"))


def cgpem_deadline(departement: str, year: int, month: int) -> datetime:
    """Latest time to deposit the month's CGPEM: 3rd working Friday, 17:00 local time."""
    friday = nth_working_friday(departement, year, month, 3)
    return datetime.combine(friday, CGPEM_DEADLINE_TIME, tzinfo=time_zone(departement))


def pecgm_available_from(departement: str, year: int, month: int) -> date:
    """The month's PECGM is available from the Monday after the 2nd working Friday.

    That Monday as the convention says, even when it is a public holiday (Whit Monday
    25 May 2026): it is the day from which the file may be there, not a deadline.
    """
    return nth_working_friday(departement, year, month, 2) + timedelta(days=3)


def working_days_before(departement: str, day: date, count: int) -> date:
    """The working day `count` working days before `day` (for reminders before a deadline)."""
    _check(departement)
    if count < 0:
        raise ValueError("count must be >= 0")
    current = day
    while count:
        current -= timedelta(days=1)
        if is_working_day(departement, current):
            count -= 1
    return current


@dataclass(frozen=True, slots=True)
class PecdhWeek:
    """One weekly PECDH: expected during the ISO week, at the latest on its last working day."""

    monday: date
    sunday: date
    due_on: date | None  # None when the whole week is non-working

    @property
    def iso_week(self) -> tuple[int, int]:
        """(ISO year, ISO week number)."""
        year, week, _ = self.monday.isocalendar()
        return year, week


def pecdh_week(departement: str, day: date) -> PecdhWeek:
    """The PECDH week that contains `day`."""
    _check(departement)
    monday = day - timedelta(days=day.weekday())
    working = [
        monday + timedelta(days=offset)
        for offset in range(5)
        if is_working_day(departement, monday + timedelta(days=offset))
    ]
    return PecdhWeek(monday, monday + timedelta(days=6), working[-1] if working else None)


def pecdh_weeks(departement: str, year: int, month: int) -> tuple[PecdhWeek, ...]:
    """The PECDH weeks whose Monday falls in the month (each week belongs to one month)."""
    first = date(year, month, 1)
    monday = first + timedelta(days=-first.weekday() % 7)
    weeks: list[PecdhWeek] = []
    while monday.month == month:
        weeks.append(pecdh_week(departement, monday))
        monday += timedelta(days=7)
    return tuple(weeks)


@dataclass(frozen=True, slots=True)
class MonthSchedule:
    """Every date a département and France Travail must know for one month."""

    departement: str
    year: int
    month: int
    cgpem_deadline: datetime
    pecgm_available_from: date
    pecdh_weeks: tuple[PecdhWeek, ...]


def month_schedule(departement: str, year: int, month: int) -> MonthSchedule:
    """The month's calendar of the three flows for `departement`."""
    return MonthSchedule(
        departement,
        year,
        month,
        cgpem_deadline(departement, year, month),
        pecgm_available_from(departement, year, month),
        pecdh_weeks(departement, year, month),
    )
