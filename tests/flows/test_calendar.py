"""The calendar on real months, public holidays included."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.flows.calendar import (
    PARIS,
    cgpem_deadline,
    is_working_day,
    month_schedule,
    pecdh_week,
    pecdh_weeks,
    pecgm_available_from,
    working_days_before,
    working_fridays,
)


def test_may_2026_skips_the_two_friday_holidays() -> None:
    # 1 May (Fête du travail) and 8 May (Victoire 1945) are Fridays in 2026.
    assert working_fridays("62", 2026, 5) == (
        date(2026, 5, 15),
        date(2026, 5, 22),
        date(2026, 5, 29),
    )
    assert cgpem_deadline("62", 2026, 5) == datetime(2026, 5, 29, 17, 0, tzinfo=PARIS)
    # Monday 25 May 2026 is Whit Monday: the convention's Monday all the same.
    assert pecgm_available_from("62", 2026, 5) == date(2026, 5, 25)


def test_november_2026_third_friday_follows_the_armistice_week() -> None:
    assert not is_working_day("62", date(2026, 11, 11))
    assert cgpem_deadline("62", 2026, 11) == datetime(2026, 11, 20, 17, 0, tzinfo=PARIS)
    assert pecgm_available_from("62", 2026, 11) == date(2026, 11, 16)


def test_the_deadline_is_tz_aware_and_follows_daylight_saving_time() -> None:
    summer = cgpem_deadline("59", 2026, 5)
    winter = cgpem_deadline("59", 2026, 11)

    assert summer.utcoffset() == timedelta(hours=2)
    assert winter.utcoffset() == timedelta(hours=1)
    assert winter.astimezone(PARIS).hour == 17


def test_christmas_on_a_friday_is_not_a_working_friday() -> None:
    assert date(2026, 12, 25) not in working_fridays("62", 2026, 12)
    assert cgpem_deadline("62", 2026, 12).date() == date(2026, 12, 18)


@pytest.mark.parametrize("departement", ["57", "67", "68"])
def test_good_friday_is_a_holiday_in_alsace_moselle_only(departement: str) -> None:
    good_friday = date(2027, 3, 26)

    assert not is_working_day(departement, good_friday)
    assert is_working_day("62", good_friday)
    assert good_friday not in working_fridays(departement, 2027, 3)
    assert good_friday in working_fridays("62", 2027, 3)


@pytest.mark.parametrize("departement", ["57", "67", "68"])
def test_good_friday_moves_the_april_2026_deadline_in_alsace_moselle(departement: str) -> None:
    # Good Friday is 3 April 2026: the 3rd working Friday becomes the 24th there.
    assert cgpem_deadline(departement, 2026, 4).date() == date(2026, 4, 24)
    assert cgpem_deadline("62", 2026, 4).date() == date(2026, 4, 17)
    assert pecgm_available_from(departement, 2026, 4) == date(2026, 4, 20)
    assert pecgm_available_from("62", 2026, 4) == date(2026, 4, 13)


@pytest.mark.parametrize("departement", ["57", "67", "68"])
def test_saint_stephen_is_a_holiday_in_alsace_moselle_only(departement: str) -> None:
    boxing_day = date(2025, 12, 26)  # a Friday

    assert not is_working_day(departement, boxing_day)
    assert is_working_day("62", boxing_day)


def test_overseas_holidays_count_and_a_short_month_keeps_its_last_working_friday() -> None:
    # 22 May 2026 (abolition of slavery) is a holiday in Martinique: two working Fridays left.
    assert working_fridays("972", 2026, 5) == (date(2026, 5, 15), date(2026, 5, 29))
    assert cgpem_deadline("972", 2026, 5).date() == date(2026, 5, 29)
    assert cgpem_deadline("971", 2026, 5).date() == date(2026, 5, 29)


def test_week_ends_are_not_working_days() -> None:
    assert not is_working_day("62", date(2026, 11, 21))
    assert not is_working_day("62", date(2026, 11, 22))
    assert is_working_day("62", date(2026, 11, 23))


def test_working_days_before_skips_holidays_and_week_ends() -> None:
    assert working_days_before("62", date(2026, 11, 20), 3) == date(2026, 11, 17)
    assert working_days_before("62", date(2026, 11, 13), 3) == date(2026, 11, 9)
    assert working_days_before("62", date(2026, 11, 16), 1) == date(2026, 11, 13)
    assert working_days_before("62", date(2026, 11, 16), 0) == date(2026, 11, 16)


def test_pecdh_weeks_are_the_iso_weeks_starting_in_the_month() -> None:
    weeks = pecdh_weeks("62", 2026, 11)

    assert [w.monday for w in weeks] == [date(2026, 11, d) for d in (2, 9, 16, 23, 30)]
    assert weeks[-1].due_on == date(2026, 12, 4)
    assert weeks[0].iso_week == (2026, 45)


def test_a_pecdh_week_ending_on_a_holiday_is_due_the_day_before() -> None:
    week = pecdh_week("62", date(2026, 5, 1))

    assert week.monday == date(2026, 4, 27)
    assert week.due_on == date(2026, 4, 30)


def test_month_schedule_gathers_the_three_flows() -> None:
    schedule = month_schedule("67", 2026, 4)

    assert schedule.cgpem_deadline.date() == date(2026, 4, 24)
    assert schedule.pecgm_available_from == date(2026, 4, 20)
    assert len(schedule.pecdh_weeks) == 4


def test_unknown_departements_are_refused() -> None:
    with pytest.raises(ValueError):
        cgpem_deadline("20", 2026, 11)
    with pytest.raises(ValueError):
        is_working_day("99", date(2026, 11, 2))


@pytest.mark.parametrize(
    ("departement", "zone", "utc_hour"),
    [
        ("971", "America/Guadeloupe", 21),  # UTC-4
        ("972", "America/Martinique", 21),  # UTC-4
        ("973", "America/Cayenne", 20),  # UTC-3
        ("974", "Indian/Reunion", 13),  # UTC+4
        ("976", "Indian/Mayotte", 14),  # UTC+3
        ("62", "Europe/Paris", 16),  # UTC+1 in November
    ],
)
def test_the_cgpem_deadline_is_17_00_on_the_departement_s_own_clock(
    departement: str, zone: str, utc_hour: int
) -> None:
    # Given a département overseas (or in metropolitan France), When its November deadline is
    # computed, Then it is 17:00 in its own time zone, not 17:00 in Paris (11:00 in Guadeloupe)
    deadline = cgpem_deadline(departement, 2026, 11)

    assert deadline.tzinfo is not None and str(deadline.tzinfo) == zone
    assert (deadline.hour, deadline.minute) == (17, 0)
    assert deadline.astimezone(ZoneInfo("UTC")).hour == utc_hour
