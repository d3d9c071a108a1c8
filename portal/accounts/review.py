"""The annual review of habilitations (revue des habilitations).

Each year between `FILR_REVIEW_OPENS` and `FILR_REVIEW_CLOSES` (1 March to 30 April), every
account manager confirms or suspends each account of its organisation. `filr jobs review`
opens the campaigns, reminds the managers weekly and 7 days before the end, and the day after
the end suspends the accounts left undecided and tells their managers. A campaign may also be
opened by hand for one organisation (after an incident). No Flask here.

Races: a campaign is unique per organisation and opening day (two servers opening the year's
campaigns create one each); a decision is unique per campaign and account (two managers
deciding at once: one wins); a reminder and a closing are conditional UPDATEs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.accounts.habilitations import function_label, today_in_paris
from portal.accounts.models import (
    ROLE_LABELS,
    AccountStatus,
    ReviewCampaign,
    ReviewDecision,
    ReviewDecisionKind,
    ReviewStatus,
    Role,
    SuspensionReason,
    User,
    UserRole,
)
from portal.accounts.suspensions import SIGNATURE, notify, suspend_by_job
from portal.auth.sessions import revoke_user_sessions
from portal.container import Services
from portal.db import utcnow
from portal.deposits.models import DownloadReceipt
from portal.orgs.models import Organisation, OrgKind
from portal.settings import Settings, month_day

REMINDER_BEFORE_END = timedelta(days=7)
MANUAL_CAMPAIGN_DAYS = 30
IN_REVIEW = (AccountStatus.ACTIVE, AccountStatus.PENDING)


class ReviewError(ValueError):
    """A review request cannot be carried out (French message for people)."""


def campaign_days(settings: Settings, year: int) -> tuple[date, date]:
    """The opening and closing days of *year*'s campaign."""
    opens, closes = month_day(settings.review_opens), month_day(settings.review_closes)
    assert opens is not None and closes is not None  # noqa: S101 - checked by Settings
    return date(year, *opens), date(year, *closes)


def open_campaign_of(session: Session, organisation_id: str) -> ReviewCampaign | None:
    """The open campaign of the organisation, if any."""
    return session.execute(
        sa.select(ReviewCampaign)
        .where(
            ReviewCampaign.organisation_id == organisation_id,
            ReviewCampaign.status == ReviewStatus.OPEN,
        )
        .order_by(ReviewCampaign.opens_on.desc())
        .limit(1)
    ).scalar_one_or_none()


def _undecided(session: Session, campaign: ReviewCampaign) -> list[User]:
    decided = sa.select(ReviewDecision.user_id).where(ReviewDecision.campaign_id == campaign.id)
    return list(
        session.execute(
            sa.select(User)
            .where(
                User.organisation_id == campaign.organisation_id,
                User.status.in_(IN_REVIEW),
                User.id.not_in(decided),
            )
            .order_by(User.full_name, User.id)
        ).scalars()
    )


@dataclass(frozen=True)
class ReviewRow:
    """One account on the manager's review page."""

    user: User
    roles: str
    function: str
    last_download_at: datetime | None
    decision: str | None


def review_rows(session: Session, campaign: ReviewCampaign) -> list[ReviewRow]:
    """The accounts of the campaign's organisation under review, with what the page shows."""
    decisions = dict(
        session.execute(
            sa.select(ReviewDecision.user_id, ReviewDecision.decision).where(
                ReviewDecision.campaign_id == campaign.id
            )
        ).all()
    )
    users = session.execute(
        sa.select(User)
        .where(
            User.organisation_id == campaign.organisation_id,
            sa.or_(User.status.in_(IN_REVIEW), User.id.in_(list(decisions))),
        )
        .order_by(User.full_name, User.id)
    ).scalars()
    downloads = dict(
        session.execute(
            sa.select(DownloadReceipt.user_id, sa.func.max(DownloadReceipt.downloaded_at))
            .join(User, User.id == DownloadReceipt.user_id)
            .where(User.organisation_id == campaign.organisation_id)
            .group_by(DownloadReceipt.user_id)
        ).all()
    )
    kind = OrgKind(campaign.organisation.kind)
    rows = []
    for user in users:
        hab = user.habilitation
        rows.append(
            ReviewRow(
                user=user,
                roles=", ".join(ROLE_LABELS[r] for r in sorted(user.roles)),
                function=function_label(kind, hab) if hab else "non renseignée",
                last_download_at=_aware(downloads.get(user.id)),
                decision=decisions.get(user.id),
            )
        )
    return rows


def _aware(value: datetime | None) -> datetime | None:
    # max() over a UTCDateTime column comes back untyped: naive on SQLite.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- opening -------------------------------------------------------------------------------


def _open(
    session: Session,
    org: Organisation,
    opens_on: date,
    closes_on: date,
    *,
    manual: bool,
    actor: audit.Actor,
    ctx: audit.Context,
    now: datetime,
) -> ReviewCampaign | None:
    """Insert the campaign and its audit row; None when another run created it first."""
    campaign = ReviewCampaign(
        organisation_id=org.id,
        opens_on=opens_on,
        closes_on=closes_on,
        status=ReviewStatus.OPEN,
        is_manual=manual,
        created_at=now,
    )
    session.add(campaign)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return None
    audit.record(
        session,
        AuditAction.ACCOUNT_REVIEW_OPENED,
        actor=actor,
        context=ctx,
        target=audit.Target("organisation", org.id, org.departement_code),
        details={
            "opens_on": opens_on.isoformat(),
            "closes_on": closes_on.isoformat(),
            "manual": manual,
        },
        at=now,
    )
    session.commit()
    return campaign


def _opening_mail(org: Organisation, closes_on: date, manual: bool) -> tuple[str, str]:
    why = "à la demande de l'administrateur" if manual else "comme chaque année"
    body = (
        f"Bonjour,\n\nLa revue des habilitations de {org.name} est ouverte {why}, jusqu'au "
        f"{closes_on:%d/%m/%Y}.\n\nDans Fil'R, menu Gestion des comptes, page « Revue des "
        "habilitations », confirmez ou suspendez chaque compte de votre organisation. Les "
        "comptes qui ne seront pas confirmés à cette date seront suspendus.\n" + SIGNATURE
    )
    return "Fil'R : revue des habilitations ouverte", body


def _org_managers(session: Session, org_id: str) -> list[str]:
    return list(
        session.execute(
            sa.select(User.email)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.organisation_id == org_id,
                User.status == AccountStatus.ACTIVE,
                UserRole.role == Role.GESTIONNAIRE,
            )
            .order_by(User.email)
        ).scalars()
    )


def open_campaign_by_hand(
    session: Session,
    svc: Services,
    org: Organisation,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
    now: datetime,
    days: int = MANUAL_CAMPAIGN_DAYS,
) -> ReviewCampaign:
    """Open a campaign for *org* now, for *days* days (after an incident); mails its managers."""
    if open_campaign_of(session, org.id) is not None:
        raise ReviewError("Une revue est déjà ouverte pour cette organisation.")
    if not 1 <= days <= 90:
        raise ReviewError("Une revue dure de 1 à 90 jours.")
    today = today_in_paris(now)
    campaign = _open(
        session,
        org,
        today,
        today + timedelta(days=days),
        manual=True,
        actor=actor,
        ctx=ctx,
        now=now,
    )
    if campaign is None:
        raise ReviewError("Une revue a déjà été ouverte aujourd'hui pour cette organisation.")
    subject, body = _opening_mail(org, campaign.closes_on, manual=True)
    notify(svc, [(m, body) for m in _org_managers(session, org.id)], subject)
    return campaign


# --- decisions ------------------------------------------------------------------------------


def decide(
    session: Session,
    campaign: ReviewCampaign,
    target: User,
    decision: ReviewDecisionKind,
    *,
    manager: User,
    ctx: audit.Context,
) -> None:
    """Record the manager's decision on *target* (and suspend it); commits.

    The caller checked that *manager* manages the campaign's organisation and that *target*
    belongs to it. One decision per account: a second one (two managers at once, a replayed
    form) is refused with ReviewError and changes nothing.
    """
    # The campaign as the database has it now, locked until the commit: a closing run (its
    # conditional UPDATE) waits for this decision, or this decision sees the campaign closed.
    still_open = session.execute(
        sa.select(ReviewCampaign.id)
        .where(ReviewCampaign.id == campaign.id, ReviewCampaign.status == ReviewStatus.OPEN)
        .with_for_update()
    ).scalar_one_or_none()
    if still_open is None:
        raise ReviewError("Cette revue est close.")
    if target.status not in IN_REVIEW:
        raise ReviewError("Ce compte n'est plus actif : rien à décider.")
    if decision is ReviewDecisionKind.SUSPENDED and target.id == manager.id:
        raise ReviewError("Vous ne pouvez pas suspendre votre propre compte.")
    now = utcnow()
    session.add(
        ReviewDecision(
            campaign_id=campaign.id,
            user_id=target.id,
            decision=decision,
            decided_by_id=manager.id,
            decided_at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ReviewError("Ce compte a déjà été revu dans cette campagne.") from None
    where = audit.Target("user", target.id, target.organisation.departement_code)
    if decision is ReviewDecisionKind.SUSPENDED:
        suspended = session.execute(
            sa.update(User)
            .where(User.id == target.id, User.status.in_(IN_REVIEW))
            .values(status=AccountStatus.SUSPENDED, suspension_reason=SuspensionReason.REVIEW)
            .execution_options(synchronize_session=False)
        )
        if suspended.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            session.rollback()
            raise ReviewError("Ce compte n'est plus actif : rien à décider.")
        revoke_user_sessions(session, target.id)
        audit.record(
            session,
            AuditAction.ACCOUNT_SUSPENDED,
            actor=manager.audit_actor,
            context=ctx,
            target=where,
            details={"reason": str(SuspensionReason.REVIEW)},
        )
    audit.record(
        session,
        AuditAction.ACCOUNT_REVIEW_CONFIRMED
        if decision is ReviewDecisionKind.CONFIRMED
        else AuditAction.ACCOUNT_REVIEW_SUSPENDED,
        actor=manager.audit_actor,
        context=ctx,
        target=where,
        details={"campaign_id": campaign.id},
    )
    session.commit()
    session.refresh(target)


# --- progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where one organisation's latest campaign stands."""

    organisation: Organisation
    campaign: ReviewCampaign | None
    confirmed: int
    suspended: int
    undecided: int

    @property
    def decided(self) -> int:
        """Accounts decided in the campaign."""
        return self.confirmed + self.suspended

    @property
    def total(self) -> int:
        """Accounts under review: decided, plus those still active or pending."""
        return self.decided + self.undecided

    @property
    def percent(self) -> int:
        """Share decided, rounded down (100 only when every account is decided)."""
        return 100 if self.total == 0 else self.decided * 100 // self.total


def national_progress(session: Session) -> list[Progress]:
    """For every organisation, its latest campaign and where it stands."""
    latest = (
        sa.select(ReviewCampaign.organisation_id, sa.func.max(ReviewCampaign.opens_on).label("d"))
        .group_by(ReviewCampaign.organisation_id)
        .subquery()
    )
    campaigns = {
        c.organisation_id: c
        for c in session.execute(
            sa.select(ReviewCampaign).join(
                latest,
                sa.and_(
                    latest.c.organisation_id == ReviewCampaign.organisation_id,
                    latest.c.d == ReviewCampaign.opens_on,
                ),
            )
        ).scalars()
    }
    counts: dict[tuple[str, str], int] = {
        (campaign_id, decision): n
        for campaign_id, decision, n in session.execute(
            sa.select(
                ReviewDecision.campaign_id, ReviewDecision.decision, sa.func.count()
            ).group_by(ReviewDecision.campaign_id, ReviewDecision.decision)
        ).all()
    }
    result = []
    for org in session.execute(sa.select(Organisation).order_by(Organisation.name)).scalars():
        campaign = campaigns.get(org.id)
        if campaign is None:
            result.append(Progress(org, None, 0, 0, 0))
            continue
        undecided = len(_undecided(session, campaign)) if campaign.status == "open" else 0
        result.append(
            Progress(
                org,
                campaign,
                counts.get((campaign.id, ReviewDecisionKind.CONFIRMED), 0),
                counts.get((campaign.id, ReviewDecisionKind.SUSPENDED), 0),
                undecided,
            )
        )
    return result


STATUS_FR = {"open": "ouverte", "closed": "close"}


def progress_csv(rows: Sequence[Progress]) -> str:
    """The national view as a French CSV (`;`, CRLF; the caller adds the BOM)."""
    buffer = io.StringIO()
    writer = audit.SafeCsvWriter(buffer)  # no cell runs as a formula
    writer.writerow(
        [
            "organisation",
            "type",
            "département",
            "revue",
            "ouverte le",
            "close le",
            "comptes",
            "confirmés",
            "suspendus",
            "sans décision",
            "avancement (%)",
        ]
    )
    for p in rows:
        c = p.campaign
        writer.writerow(
            [
                p.organisation.name,
                p.organisation.kind_label,
                p.organisation.departement_code or "",
                STATUS_FR[c.status] if c else "aucune",
                f"{c.opens_on:%d/%m/%Y}" if c else "",
                f"{c.closes_on:%d/%m/%Y}" if c else "",
                p.total,
                p.confirmed,
                p.suspended,
                p.undecided,
                p.percent if c else "",
            ]
        )
    return buffer.getvalue()


# --- the job --------------------------------------------------------------------------------


@dataclass
class ReviewReport:
    """What `filr jobs review` did (or would do, with --dry-run)."""

    opened: int = 0
    reminded: int = 0
    closed: int = 0
    suspended: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    campaign_ids: list[str] = field(default_factory=list)

    def count(self, mails: tuple[int, int]) -> None:
        """Add (sent, failed) mails."""
        self.mails_sent += mails[0]
        self.mails_failed += mails[1]


def _reminder_due(campaign: ReviewCampaign, today: date) -> bool:
    if today <= campaign.opens_on or today > campaign.closes_on:
        return False
    weekly = (today - campaign.opens_on).days % 7 == 0
    return weekly or today == campaign.closes_on - REMINDER_BEFORE_END


def _claim_reminder(session: Session, campaign_id: str, today: date) -> bool:
    result = session.execute(
        sa.update(ReviewCampaign)
        .where(
            ReviewCampaign.id == campaign_id,
            ReviewCampaign.status == ReviewStatus.OPEN,
            sa.or_(
                ReviewCampaign.last_reminder_on.is_(None),
                ReviewCampaign.last_reminder_on < today,
            ),
        )
        .values(last_reminder_on=today)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def _claim_closing(session: Session, campaign_id: str, now: datetime) -> bool:
    result = session.execute(
        sa.update(ReviewCampaign)
        .where(ReviewCampaign.id == campaign_id, ReviewCampaign.status == ReviewStatus.OPEN)
        .values(status=ReviewStatus.CLOSED, closed_at=now)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def run_review(
    session: Session,
    svc: Services,
    now: datetime,
    ctx: audit.Context,
    *,
    dry_run: bool = False,
) -> ReviewReport:
    """Open this year's campaigns in their window, remind, and close those past their end."""
    today = today_in_paris(now)
    report = ReviewReport()
    opens_on, closes_on = campaign_days(svc.settings, today.year)
    if opens_on <= today <= closes_on:
        _open_the_year(session, svc, report, opens_on, closes_on, ctx, now, dry_run)
    campaigns = list(
        session.execute(
            sa.select(ReviewCampaign)
            .where(ReviewCampaign.status == ReviewStatus.OPEN)
            .order_by(ReviewCampaign.opens_on, ReviewCampaign.id)
        ).scalars()
    )
    session.commit()
    for campaign in campaigns:
        if today > campaign.closes_on:
            _close(session, svc, report, campaign, ctx, now, dry_run)
        elif _reminder_due(campaign, today):
            _remind(session, svc, report, campaign, today, ctx, now, dry_run)
    return report


def _open_the_year(
    session: Session,
    svc: Services,
    report: ReviewReport,
    opens_on: date,
    closes_on: date,
    ctx: audit.Context,
    now: datetime,
    dry_run: bool,
) -> None:
    has_campaign = sa.select(ReviewCampaign.organisation_id).where(
        sa.or_(ReviewCampaign.opens_on == opens_on, ReviewCampaign.status == ReviewStatus.OPEN)
    )
    has_accounts = sa.select(User.organisation_id).where(User.status.in_(IN_REVIEW))
    orgs = list(
        session.execute(
            sa.select(Organisation)
            .where(Organisation.id.not_in(has_campaign), Organisation.id.in_(has_accounts))
            .order_by(Organisation.name)
        ).scalars()
    )
    session.commit()
    for org in orgs:
        if dry_run:
            report.opened += 1
            continue
        campaign = _open(
            session, org, opens_on, closes_on, manual=False, actor=audit.SYSTEM, ctx=ctx, now=now
        )
        if campaign is None:
            continue  # another run opened it first
        report.opened += 1
        report.campaign_ids.append(campaign.id)
        subject, body = _opening_mail(org, closes_on, manual=False)
        report.count(notify(svc, [(m, body) for m in _org_managers(session, org.id)], subject))


def _remind(
    session: Session,
    svc: Services,
    report: ReviewReport,
    campaign: ReviewCampaign,
    today: date,
    ctx: audit.Context,
    now: datetime,
    dry_run: bool,
) -> None:
    undecided = len(_undecided(session, campaign))
    session.commit()
    if undecided == 0:
        return
    if dry_run:
        report.reminded += 1
        return
    if not _claim_reminder(session, campaign.id, today):
        return
    org = campaign.organisation
    audit.record(
        session,
        AuditAction.ACCOUNT_REVIEW_REMINDED,
        context=ctx,
        target=audit.Target("organisation", org.id, org.departement_code),
        details={"campaign_id": campaign.id, "undecided": undecided},
        at=now,
    )
    session.commit()
    report.reminded += 1
    left = (campaign.closes_on - today).days
    body = (
        f"Bonjour,\n\nLa revue des habilitations de {org.name} se termine le "
        f"{campaign.closes_on:%d/%m/%Y} (dans {left} jours). {undecided} compte(s) attendent "
        "encore votre décision : confirmez ou suspendez chacun depuis la page « Revue des "
        "habilitations ». Les comptes sans décision à cette date seront suspendus.\n" + SIGNATURE
    )
    report.count(
        notify(
            svc,
            [(m, body) for m in _org_managers(session, org.id)],
            "Fil'R : rappel, revue des habilitations",
        )
    )


def _close(
    session: Session,
    svc: Services,
    report: ReviewReport,
    campaign: ReviewCampaign,
    ctx: audit.Context,
    now: datetime,
    dry_run: bool,
) -> None:
    if dry_run:
        report.closed += 1
        report.suspended += len(_undecided(session, campaign))
        session.commit()
        return
    if not _claim_closing(session, campaign.id, now):
        return  # another run closed it
    # Listed once the campaign is closed: a decision made until then is seen (see `decide`).
    undecided = [u.id for u in _undecided(session, campaign)]
    session.commit()
    no_decision = ~sa.exists().where(
        ReviewDecision.campaign_id == campaign.id, ReviewDecision.user_id == User.id
    )
    report.closed += 1
    report.campaign_ids.append(campaign.id)
    suspended = 0
    for user_id in undecided:
        done = suspend_by_job(
            session,
            svc,
            user_id,
            SuspensionReason.REVIEW,
            ctx,
            now,
            tell_managers=False,  # one summary below instead of one mail per account
            still_due=no_decision,
        )
        if done is not None:
            suspended += 1
            report.count((done.mails_sent, done.mails_failed))
    report.suspended += suspended
    org = campaign.organisation
    audit.record(
        session,
        AuditAction.ACCOUNT_REVIEW_CLOSED,
        context=ctx,
        target=audit.Target("organisation", org.id, org.departement_code),
        details={"campaign_id": campaign.id, "suspended": suspended},
        at=now,
    )
    session.commit()
    body = (
        f"Bonjour,\n\nLa revue des habilitations de {org.name} est close depuis le "
        f"{campaign.closes_on:%d/%m/%Y}. "
        + (
            f"{suspended} compte(s) sans décision ont été suspendus ; vous pouvez les réactiver "
            "depuis la page Gestion des comptes si ces personnes doivent continuer à utiliser "
            "Fil'R (elles choisiront un nouveau mot de passe).\n"
            if suspended
            else "Chaque compte a reçu une décision : merci.\n"
        )
        + SIGNATURE
    )
    report.count(
        notify(
            svc,
            [(m, body) for m in _org_managers(session, org.id)],
            "Fil'R : revue des habilitations close",
        )
    )


def review_state(session: Session, user: User) -> dict[str, str | None] | None:
    """Where *user* stands in its organisation's latest campaign (None: never reviewed)."""
    campaign = session.execute(
        sa.select(ReviewCampaign)
        .where(ReviewCampaign.organisation_id == user.organisation_id)
        .order_by(ReviewCampaign.opens_on.desc(), ReviewCampaign.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if campaign is None:
        return None
    decision = session.execute(
        sa.select(ReviewDecision.decision).where(
            ReviewDecision.campaign_id == campaign.id, ReviewDecision.user_id == user.id
        )
    ).scalar_one_or_none()
    return {
        "campaign_status": campaign.status,
        "opens_on": campaign.opens_on.isoformat(),
        "closes_on": campaign.closes_on.isoformat(),
        "decision": decision,
    }
