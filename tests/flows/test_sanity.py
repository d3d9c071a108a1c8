"""Sanity against the previous period: counts and shares, thresholds."""

from __future__ import annotations

import pytest

from portal.flows.core import FlowType
from portal.flows.core.sanity import (
    Direction,
    FindingKind,
    PeriodCounts,
    Thresholds,
    compare_periods,
)
from tests.flows.conftest import Sample, check

PREVIOUS = PeriodCounts(1000, {"01": 400, "05": 300, "06": 300})


def test_no_history_means_no_finding() -> None:
    assert compare_periods(PREVIOUS, None) == ()


def test_a_stable_period_raises_nothing() -> None:
    current = PeriodCounts(1040, {"01": 410, "05": 320, "06": 310})

    assert compare_periods(current, PREVIOUS) == ()


def test_a_truncated_export_is_flagged_on_count_and_share() -> None:
    current = PeriodCounts(450, {"01": 50, "05": 200, "06": 200})

    findings = compare_periods(current, PREVIOUS)

    assert [(f.kind, f.direction, f.subject) for f in findings] == [
        (FindingKind.RECORD_COUNT, Direction.DROP, "dossiers"),
        (FindingKind.NATURE_SHARE, Direction.DROP, "01"),
    ]
    assert findings[0].change == pytest.approx(-0.55)
    assert "1000 → 450" in findings[0].message
    assert "40,0 % → 11,1 %" in findings[1].message


@pytest.mark.parametrize(
    ("count", "flagged"), [(500, True), (501, False), (1999, False), (2000, True)]
)
def test_default_thresholds_are_minus_50_and_plus_100_percent(count: int, flagged: bool) -> None:
    current = PeriodCounts(count, {"01": count})
    previous = PeriodCounts(1000, {"01": 1000})

    assert bool(compare_periods(current, previous)) is flagged


def test_thresholds_are_configurable() -> None:
    current = PeriodCounts(800, {})

    assert compare_periods(current, PREVIOUS) == ()
    assert compare_periods(current, PREVIOUS, Thresholds(drop=-0.1, jump=0.1))


def test_small_share_moves_are_not_alarms() -> None:
    previous = PeriodCounts(1000, {"01": 995, "04": 5})
    current = PeriodCounts(1000, {"01": 985, "04": 15})  # +200 % but one point

    assert compare_periods(current, previous) == ()


def test_a_nature_that_disappears_or_appears_is_flagged() -> None:
    previous = PeriodCounts(1000, {"01": 500, "05": 500})
    current = PeriodCounts(1000, {"01": 500, "06": 500})

    findings = compare_periods(current, previous)

    assert {(f.subject, f.direction) for f in findings} == {
        ("05", Direction.DISAPPEARED),
        ("06", Direction.APPEARED),
    }
    assert all(f.change is None for f in findings)


def test_an_empty_file_after_a_full_one_is_flagged() -> None:
    findings = compare_periods(PeriodCounts(0), PREVIOUS)

    assert [(f.kind, f.direction) for f in findings] == [
        (FindingKind.RECORD_COUNT, Direction.DISAPPEARED)
    ]
    assert "aucun dossier" in findings[0].message


def test_reports_can_be_compared_directly(sample: Sample) -> None:
    before = check(sample(FlowType.CGPEM, 200, seed=1)[0])
    after = check(sample(FlowType.CGPEM, 60, seed=2)[0])

    findings = compare_periods(after, before)

    assert findings[0].kind is FindingKind.RECORD_COUNT
    assert findings[0].previous == 200 and findings[0].current == 60


def test_messages_hold_no_personal_data() -> None:
    current = PeriodCounts(10, {"01": 10})
    for finding in compare_periods(current, PREVIOUS):
        assert set(finding.message) - set("0123456789") and "NIR" not in finding.message


def test_inconsistent_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        Thresholds(drop=0.5)
    with pytest.raises(ValueError):
        Thresholds(jump=-1)
