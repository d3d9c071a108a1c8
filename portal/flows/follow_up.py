"""The follow-up table ("tableau de suivi"): each flow's status per département and month.

Statuses come from the calendar (`portal.flows.calendar`) and the flow deposits: attendu,
déposé à temps, en retard, rejeté (N erreurs), téléchargé par l'autre partie, expiré. Counts and
dates only: nothing here reads a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.db import utcnow
from portal.deposits.models import Deposit, DepositStatus, DownloadReceipt
from portal.flows import calendar
from portal.flows.core.types import FlowType
from portal.flows.models import FlowDeposit, FlowStatus
from portal.flows.permissions import SENDER_SIDE
from portal.flows.services import period_label
from portal.formats import datetime_fr
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation, OrgKind

END_OF_DAY = time(23, 59, 59)


class FollowUpStatus(StrEnum):
    """Status of one flow for one period."""

    EXPECTED = "attendu"
    ON_TIME = "depose_a_temps"
    LATE = "en_retard"
    DEPOSITED_LATE = "depose_en_retard"
    REJECTED = "rejete"
    DOWNLOADED = "telecharge"
    EXPIRED = "expire"


STATUS_BADGES = {
    FollowUpStatus.EXPECTED: "info",
    FollowUpStatus.ON_TIME: "success",
    FollowUpStatus.LATE: "error",
    FollowUpStatus.DEPOSITED_LATE: "warning",
    FollowUpStatus.REJECTED: "error",
    FollowUpStatus.DOWNLOADED: "success",
    FollowUpStatus.EXPIRED: "new",
}


@dataclass(frozen=True)
class FollowUpRow:
    """One line of the table."""

    departement: str
    flow_type: FlowType
    period_start: date
    due_at: datetime | None  # deadline (CGPEM), expected date (PECGM), end of week (PECDH)
    status: FollowUpStatus
    label: str
    flow_id: str | None = None  # the valid flow, else the latest refused attempt
    sender_org_id: str | None = None
    deposited_at: datetime | None = None
    records: int | None = None
    errors: int | None = None
    rejected_attempts: int = 0
    downloaded_at: datetime | None = None
    is_unusable: bool = False
    sanity_flags: int = 0

    @property
    def period_label(self) -> str:
        """`novembre 2026` or `semaine du 02/11/2026`."""
        return period_label(self.flow_type, self.period_start)

    @property
    def due_label(self) -> str:
        """The due date on the département's own clock, e.g. `20/11/2026 à 17:00 (heure de
        la Guadeloupe)` overseas (the convention's deadline is 17:00 there, not in Paris)."""
        return local_time_label(self.departement, self.due_at)

    @property
    def badge(self) -> str:
        """DSFR badge variant."""
        return STATUS_BADGES[self.status]


def _end_of(day: date, departement: str) -> datetime:
    return datetime.combine(day, END_OF_DAY, tzinfo=calendar.time_zone(departement))


def local_time_label(departement: str, value: datetime | None) -> str:
    """`20/11/2026 à 17:00`, on the département's clock (named when it is not Paris's)."""
    if value is None:
        return "—"
    text = datetime_fr(value, tz=calendar.time_zone(departement))
    name = calendar.TIME_ZONE_NAMES.get(departement)
    return f"{text} ({name})" if name else text


def expected_periods(
    departement: str, year: int, month: int
) -> list[tuple[FlowType, date, datetime | None]]:
    """The flows expected from a département and from France Travail in one month."""
    schedule = calendar.month_schedule(departement, year, month)
    first = date(year, month, 1)
    rows: list[tuple[FlowType, date, datetime | None]] = [
        (FlowType.CGPEM, first, schedule.cgpem_deadline),
        (FlowType.PECGM, first, _end_of(schedule.pecgm_available_from, departement)),
    ]
    for week in schedule.pecdh_weeks:
        due = _end_of(week.due_on, departement) if week.due_on else None
        rows.append((FlowType.PECDH, week.monday, due))
    return rows


def _status_of(
    due_at: datetime | None,
    valid: FlowDeposit | None,
    rejected: Sequence[FlowDeposit],
    downloaded_at: datetime | None,
    now: datetime,
) -> tuple[FollowUpStatus, str]:
    if valid is not None:
        deposit = valid.deposit
        on_time = due_at is None or valid.created_at <= due_at
        timing = "à temps" if on_time else "en retard"
        if deposit.status != DepositStatus.AVAILABLE or deposit.is_expired(now):
            return FollowUpStatus.EXPIRED, f"Expiré (déposé {timing})"
        if downloaded_at is not None:
            return FollowUpStatus.DOWNLOADED, f"Téléchargé par l'autre partie (déposé {timing})"
        if on_time:
            return FollowUpStatus.ON_TIME, "Déposé à temps"
        return FollowUpStatus.DEPOSITED_LATE, "Déposé en retard"
    if rejected:
        errors = rejected[-1].error_count
        late = " — en retard" if due_at is not None and now > due_at else ""
        return FollowUpStatus.REJECTED, f"Rejeté ({errors} erreur{'s' if errors > 1 else ''}){late}"
    if due_at is not None and now > due_at:
        return FollowUpStatus.LATE, "En retard"
    return FollowUpStatus.EXPECTED, "Attendu"


def active_departements(session: Session, among: Iterable[str]) -> list[str]:
    """Départements of *among* that have a département organisation on the portal."""
    wanted = set(among)
    codes = session.execute(
        sa.select(Organisation.departement_code)
        .where(Organisation.kind == OrgKind.DEPARTEMENT)
        .distinct()
    ).scalars()
    return sorted(c for c in codes if c is not None and c in wanted)


def follow_up(
    session: Session,
    departements: Sequence[str],
    year: int,
    month: int,
    *,
    now: datetime | None = None,
) -> list[FollowUpRow]:
    """The table for *departements* and one month, in département then calendar order."""
    now = now or utcnow()
    if not departements:
        return []
    first = date(year, month, 1)
    last = (first + timedelta(days=32)).replace(day=1)
    found = session.execute(
        sa.select(FlowDeposit, Organisation.kind)
        .join(Organisation, Organisation.id == FlowDeposit.sender_org_id)
        .where(
            FlowDeposit.departement_code.in_(list(departements)),
            FlowDeposit.period_start >= first - timedelta(days=7),
            FlowDeposit.period_start < last,
        )
        .order_by(FlowDeposit.created_at)
    ).all()
    # Only the side that sends a flow makes attempts at it: a CGPEM refused because France
    # Travail tried to deposit it is no CGPEM of the département's, rejected or otherwise.
    flows: list[FlowDeposit] = []
    by_key: dict[tuple[str, str, date], list[FlowDeposit]] = {}
    for flow, kind in found:
        sent_type = flow.flow_type
        if sent_type and SENDER_SIDE[FlowType(sent_type)] == OrgKind(kind):
            flows.append(flow)
            key = (flow.departement_code, sent_type, flow.period_start)
            by_key.setdefault(key, []).append(flow)
    downloads: dict[str, datetime] = {}
    valid_ids = [f.deposit_id for f in flows if f.status == FlowStatus.VALID]
    if valid_ids:
        rows = session.execute(
            sa.select(Deposit.id, sa.func.min(DownloadReceipt.downloaded_at))
            .join(DownloadReceipt, DownloadReceipt.deposit_id == Deposit.id)
            .join(User, User.id == DownloadReceipt.user_id)
            .where(Deposit.id.in_(valid_ids), User.organisation_id != Deposit.sender_org_id)
            .group_by(Deposit.id)
        ).all()
        downloads = {deposit_id: at for deposit_id, at in rows if at is not None}
    table: list[FollowUpRow] = []
    for departement in departements:
        for flow_type, period, due_at in expected_periods(departement, year, month):
            attempts = by_key.get((departement, str(flow_type), period), [])
            # A flow its sender withdrew was taken back: the period counts as not delivered.
            valid_ones = [
                f
                for f in attempts
                if f.status == FlowStatus.VALID and f.deposit.withdrawn_at is None
            ]
            valid = valid_ones[-1] if valid_ones else None
            rejected = [f for f in attempts if f.status == FlowStatus.REJECTED]
            downloaded_at = downloads.get(valid.deposit_id) if valid else None
            status, label = _status_of(due_at, valid, rejected, downloaded_at, now)
            shown = valid or (rejected[-1] if rejected else None)
            table.append(
                FollowUpRow(
                    departement=departement,
                    flow_type=flow_type,
                    period_start=period,
                    due_at=due_at,
                    status=status,
                    label=label,
                    flow_id=shown.id if shown else None,
                    sender_org_id=shown.sender_org_id if shown else None,
                    deposited_at=shown.created_at if shown else None,
                    records=valid.record_count if valid else None,
                    errors=rejected[-1].error_count if rejected and not valid else None,
                    rejected_attempts=len(rejected),
                    downloaded_at=downloaded_at,
                    is_unusable=bool(valid and valid.unusable_at),
                    sanity_flags=len(valid.sanity) if valid else 0,
                )
            )
    return table


def _fr(value: datetime | None) -> str:
    if value is None:
        return ""
    return datetime_fr(value, at=" ")


def follow_up_csv(rows: Iterable[FollowUpRow]) -> str:
    """The table as CSV (`;`, as French spreadsheets expect): counts and dates only."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        [
            "departement", "nom", "flux", "periode", "echeance", "statut", "code_statut",
            "depose_le", "dossiers", "erreurs", "tentatives_rejetees", "telecharge_le",
            "inexploitable", "alertes_coherence",
        ]
    )  # fmt: skip
    for row in rows:
        writer.writerow(
            [
                row.departement,
                DEPARTEMENTS[row.departement],
                str(row.flow_type),
                row.period_start.isoformat(),
                _fr(row.due_at),
                row.label,
                str(row.status),
                _fr(row.deposited_at),
                "" if row.records is None else row.records,
                "" if row.errors is None else row.errors,
                row.rejected_attempts,
                _fr(row.downloaded_at),
                "oui" if row.is_unusable else "non",
                row.sanity_flags,
            ]
        )
    return buffer.getvalue()
