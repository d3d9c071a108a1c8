"""Sanity of a period's flow against the previous period: counts only, no personal data.

A truncated export (half the records missing, one orientation nature gone) is valid XML and
passes every rule; comparing it with the same flow's previous period catches it before anyone
acts on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from portal.flows.core.codes import NATURES_ORIENTATION
from portal.flows.core.report import ValidationReport


class FindingKind(StrEnum):
    """What moved."""

    RECORD_COUNT = "record_count"
    NATURE_SHARE = "nature_share"


class Direction(StrEnum):
    """How it moved."""

    DROP = "drop"
    JUMP = "jump"
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"


@dataclass(frozen=True, slots=True)
class PeriodCounts:
    """The counts of one period's flow: what the sanity check compares (storable as is)."""

    record_count: int
    nature_counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_report(cls, report: ValidationReport) -> PeriodCounts:
        """The counts of a validated file."""
        return cls(report.record_count, MappingProxyType(dict(report.nature_counts)))

    def share(self, code: str) -> float:
        """Share of records of nature `code`, among records with a nature (0 when none)."""
        total = sum(self.nature_counts.values())
        return self.nature_counts.get(code, 0) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a change is worth flagging. Changes are relative: -0.5 is a drop of 50 %."""

    drop: float = -0.5  # flag a change <= this
    jump: float = 1.0  # flag a change >= this (+100 %)
    # A nature's share must also move by this many percentage points, so that a nature worth
    # 0.2 % of the records going to 0.5 % is not an alarm.
    min_share_points: float = 5.0

    def __post_init__(self) -> None:
        if not -1.0 <= self.drop < 0 < self.jump:
            raise ValueError("thresholds need -1 <= drop < 0 < jump")
        if self.min_share_points < 0:
            raise ValueError("min_share_points must be >= 0")


@dataclass(frozen=True, slots=True)
class SanityFinding:
    """A change beyond the thresholds between two periods of the same flow."""

    kind: FindingKind
    direction: Direction
    subject: str  # "dossiers" or a nature code
    previous: float  # record count, or share in percent
    current: float
    change: float | None  # relative change (-0.62 = -62 %), None when from or to zero

    @property
    def message(self) -> str:
        """French sentence for both sides (counts only)."""
        advice = " Vérifiez que l'export est complet avant de l'exploiter."
        if self.kind is FindingKind.RECORD_COUNT:
            before, now = int(self.previous), int(self.current)
            if self.direction is Direction.APPEARED:
                return (
                    f"Le fichier contient {now} dossiers ; la période précédente n'en avait aucun."
                )
            if self.direction is Direction.DISAPPEARED:
                return (
                    "Le fichier ne contient aucun dossier ; la période précédente en avait "
                    f"{before}."
                )
            verb = "baisse" if self.direction is Direction.DROP else "augmente"
            return (
                f"Le nombre de dossiers {verb} de {_percent(self.change)} par rapport à la période "
                f"précédente ({before} → {now})." + advice
            )
        label = NATURES_ORIENTATION.get(self.subject, self.subject)
        what = f"La part de la nature d'orientation {self.subject} ({label})"
        values = f"{_number(self.previous)} % → {_number(self.current)} %"
        if self.direction is Direction.APPEARED:
            return f"{what} apparaît ({values})." + advice
        if self.direction is Direction.DISAPPEARED:
            return f"{what} disparaît ({values})." + advice
        verb = "baisse" if self.direction is Direction.DROP else "augmente"
        return (
            f"{what} {verb} de {_percent(self.change)} par rapport à la période précédente "
            f"({values})." + advice
        )


def _number(value: float) -> str:
    return f"{value:.1f}".replace(".", ",")


def _percent(change: float | None) -> str:
    return f"{abs(change or 0) * 100:.0f} %"


def compare_periods(
    current: PeriodCounts | ValidationReport,
    previous: PeriodCounts | ValidationReport | None,
    thresholds: Thresholds | None = None,
) -> tuple[SanityFinding, ...]:
    """Changes beyond the thresholds between `previous` and `current`; none without history."""
    if previous is None:
        return ()
    thresholds = thresholds or Thresholds()
    now = current if isinstance(current, PeriodCounts) else PeriodCounts.from_report(current)
    before = previous if isinstance(previous, PeriodCounts) else PeriodCounts.from_report(previous)
    findings: list[SanityFinding] = []
    count = _change(before.record_count, now.record_count, thresholds, points=None)
    if count is not None:
        direction, change = count
        findings.append(
            SanityFinding(
                FindingKind.RECORD_COUNT,
                direction,
                "dossiers",
                before.record_count,
                now.record_count,
                change,
            )
        )
    if sum(before.nature_counts.values()) and sum(now.nature_counts.values()):
        for code in sorted(set(before.nature_counts) | set(now.nature_counts)):
            share_before, share_now = 100 * before.share(code), 100 * now.share(code)
            moved = _change(share_before, share_now, thresholds, points=thresholds.min_share_points)
            if moved is not None:
                direction, change = moved
                findings.append(
                    SanityFinding(
                        FindingKind.NATURE_SHARE, direction, code, share_before, share_now, change
                    )
                )
    return tuple(findings)


def _change(
    before: float, now: float, thresholds: Thresholds, *, points: float | None
) -> tuple[Direction, float | None] | None:
    if points is not None and abs(now - before) < points:
        return None
    if before == 0:
        return (Direction.APPEARED, None) if now > 0 else None
    if now == 0:
        return Direction.DISAPPEARED, None
    change = (now - before) / before
    if change <= thresholds.drop:
        return Direction.DROP, change
    if change >= thresholds.jump:
        return Direction.JUMP, change
    return None
