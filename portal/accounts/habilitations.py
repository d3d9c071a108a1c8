"""Habilitations: the function an account is granted, by whom, since and until when.

The conventions put the account manager in charge of a signed, nominative habilitation with
the person's function and an end date. The job behind `filr jobs habilitations` sends notices
14 days and 1 day before the end date (to the person and the organisation's account managers)
and suspends the account on the day. No Flask here: callers pass the session, the services, the
day and the audit context. Every notice and every suspension is claimed by a conditional UPDATE
committed before any mail leaves, so that two runs at once send one set of notices.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import (
    AccountStatus,
    Habilitation,
    SuspensionReason,
    User,
)
from portal.accounts.suspensions import SIGNATURE, managers_of, notify, suspend_by_job
from portal.container import Services
from portal.db import new_id, utcnow
from portal.deposits.antivirus import Antivirus
from portal.filecheck.clamd import ClamdUnavailable
from portal.filecheck.pdf_content import check_pdf
from portal.orgs.models import Organisation, OrgKind
from portal.securite.alerts import alert_at_once
from portal.securite.detectors import Hit
from portal.securite.models import AlertKind

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
OTHER = "autre"
# "au plus 3 ans": the conventions' longest habilitation; 3 × 365 days plus a leap day.
MAX_LIFETIME = timedelta(days=3 * 365 + 1)
NOTICE_DAYS = (14, 1)

# The functions a person holds, per kind of organisation (plus "autre" with a short label).
FUNCTIONS: dict[OrgKind, dict[str, str]] = {
    OrgKind.DEPARTEMENT: {
        "instructeur_rsa": "Instructeur RSA (SLAI)",
        "referent_rsa": "Référent RSA",
        "travailleur_social": "Travailleur social",
        "encadrant": "Encadrant du service insertion",
        "technicien_si": "Technicien des systèmes d'information",
        "gestionnaire_comptes": "Gestionnaire de comptes (RGC)",
        "responsable_securite": "Responsable de la sécurité (RSSI)",
    },
    OrgKind.FRANCE_TRAVAIL: {
        "conseiller": "Conseiller",
        "conseiller_referent": "Conseiller référent RSA",
        "directeur_agence": "Directeur d'agence",
        "direction_territoriale": "Chargé de mission en direction territoriale",
        "technicien_si": "Technicien des systèmes d'information",
        "gestionnaire_comptes": "Gestionnaire de comptes (RGC)",
        "responsable_securite": "Responsable de la sécurité (RSSI)",
    },
    OrgKind.PRESTATAIRE: {
        "referent_parcours": "Référent de parcours",
        "travailleur_social": "Travailleur social",
        "coordinateur": "Coordinateur",
        "gestionnaire_comptes": "Gestionnaire de comptes (RGC)",
        "responsable_securite": "Responsable de la sécurité",
    },
    OrgKind.PLATEFORME: {
        "exploitant": "Exploitant de la plateforme",
        "administrateur": "Administrateur technique",
        "gestionnaire_comptes": "Gestionnaire de comptes (RGC)",
        "responsable_securite": "Responsable de la sécurité (RSSI)",
    },
}
OTHER_LABEL = "Autre (à préciser)"


class HabilitationError(ValueError):
    """A habilitation cannot be recorded as given (French message for people)."""


def function_choices(kind: OrgKind) -> list[tuple[str, str]]:
    """The functions an account of an organisation of *kind* may hold, "autre" last."""
    return [*FUNCTIONS[kind].items(), (OTHER, OTHER_LABEL)]


def function_label(kind: OrgKind, habilitation: Habilitation) -> str:
    """What the function of *habilitation* reads as."""
    if habilitation.function == OTHER:
        return habilitation.function_label or OTHER_LABEL
    return FUNCTIONS[kind].get(habilitation.function, habilitation.function)


def today_in_paris(now: datetime) -> date:
    """The calendar day in France of *now* (the conventions speak in French days)."""
    return now.astimezone(PARIS).date()


def morning_of(day: date) -> datetime:
    """06:00 in France on *day*, as an aware UTC datetime: when a job run `--as-of` acts."""
    return datetime.combine(day, time(6, 0), PARIS)


@dataclass(frozen=True)
class HabilitationInput:
    """A habilitation as a manager gives it, before checks."""

    function: str
    function_label: str | None
    granted_on: date
    ends_on: date | None


def check(kind: OrgKind, given: HabilitationInput, today: date) -> HabilitationInput:
    """The habilitation *given*, normalised; HabilitationError names what is wrong."""
    if given.function != OTHER and given.function not in FUNCTIONS[kind]:
        raise HabilitationError("Fonction inconnue pour ce type d'organisation.")
    label = " ".join((given.function_label or "").split()) or None
    if given.function == OTHER:
        if label is None or not 2 <= len(label) <= 80:
            raise HabilitationError(
                "Précisez la fonction (entre 2 et 80 caractères) lorsque vous choisissez « autre »."
            )
    else:
        label = None
    if given.granted_on > today:
        raise HabilitationError("La date d'habilitation ne peut pas être dans le futur.")
    if given.ends_on is not None:
        if given.ends_on <= today:
            raise HabilitationError("La date de fin doit être postérieure à aujourd'hui.")
        if given.ends_on > given.granted_on + MAX_LIFETIME:
            raise HabilitationError(
                "Une habilitation dure au plus 3 ans : choisissez une date de fin plus proche."
            )
    return HabilitationInput(given.function, label, given.granted_on, given.ends_on)


def set_habilitation(
    session: Session,
    user: User,
    given: HabilitationInput,
    *,
    granted_by: User | None,
    actor: audit.Actor,
    ctx: audit.Context,
    today: date,
) -> Habilitation:
    """Record (or replace) *user*'s habilitation and audit it; the caller commits.

    A new end date re-arms the notices of the old one.
    """
    given = check(OrgKind(user.organisation.kind), given, today)
    hab = user.habilitation
    if hab is None:
        hab = Habilitation(user_id=user.id)
        user.habilitation = hab
    before = {} if hab.function is None else _describe(hab, "previous_")
    if hab.ends_on != given.ends_on:
        hab.notice_14_at = hab.notice_1_at = None
    hab.function = given.function
    hab.function_label = given.function_label
    hab.granted_on = given.granted_on
    hab.ends_on = given.ends_on
    hab.granted_by_id = granted_by.id if granted_by else None
    hab.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        AuditAction.ACCOUNT_HABILITATION_UPDATED,
        actor=actor,
        context=ctx,
        target=audit.Target("user", user.id, user.organisation.departement_code),
        # The function's code, never its free label (a label is typed by a person).
        details={**_describe(hab), **before},
    )
    return hab


def _describe(hab: Habilitation, prefix: str = "") -> dict[str, str | None]:
    return {
        f"{prefix}function": hab.function,
        f"{prefix}granted_on": hab.granted_on.isoformat(),
        f"{prefix}ends_on": hab.ends_on.isoformat() if hab.ends_on else None,
    }


def save_habilitation(
    session: Session,
    user: User,
    given: HabilitationInput,
    *,
    granted_by: User | None,
    actor: audit.Actor,
    ctx: audit.Context,
    today: date,
) -> Habilitation:
    """`set_habilitation` and commit; a refusal (HabilitationError) rolls back and propagates."""
    try:
        hab = set_habilitation(
            session, user, given, granted_by=granted_by, actor=actor, ctx=ctx, today=today
        )
    except HabilitationError:
        session.rollback()
        raise
    session.commit()
    return hab


def has_ended(user: User, today: date) -> bool:
    """True when *user*'s habilitation ended (its end date is today or past)."""
    hab = user.habilitation
    return hab is not None and hab.ends_on is not None and hab.ends_on <= today


# --- the job ---------------------------------------------------------------------------------


@dataclass
class HabilitationReport:
    """What `filr jobs habilitations` did (or would do, with --dry-run)."""

    notices: dict[int, int] = field(default_factory=lambda: dict.fromkeys(NOTICE_DAYS, 0))
    suspended: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    user_ids: list[str] = field(default_factory=list)


def _notice_column(days: int) -> InstrumentedAttribute[datetime | None]:
    return Habilitation.notice_14_at if days == 14 else Habilitation.notice_1_at


def _claim_notice(session: Session, user_id: str, ends_on: date, days: int, now: datetime) -> bool:
    column = _notice_column(days)
    result = session.execute(
        sa.update(Habilitation)
        .where(
            Habilitation.user_id == user_id,
            Habilitation.ends_on == ends_on,
            column.is_(None),
        )
        .values({column.key: now})
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def _notice_mail(user: User, ends_on: date, days: int) -> tuple[str, str, str]:
    when = "demain" if days == 1 else f"dans {days} jours"
    day = f"{ends_on:%d/%m/%Y}"
    subject = f"Fil'R : une habilitation prend fin {when}"
    to_person = (
        f"Bonjour,\n\nVotre habilitation à Fil'R ({user.organisation.name}) prend fin le {day}, "
        f"{when}. Ce jour-là, votre compte sera suspendu.\n\nSi vous devez continuer à utiliser "
        "Fil'R, demandez au gestionnaire de comptes de votre organisation de prolonger votre "
        "habilitation.\n" + SIGNATURE
    )
    to_manager = (
        f"Bonjour,\n\nL'habilitation de {user.full_name} ({user.organisation.name}) prend fin "
        f"le {day}, {when}. Ce jour-là, son compte sera suspendu.\n\nSi cette personne doit "
        "continuer à utiliser Fil'R, prolongez son habilitation depuis la page du compte "
        "(Gestion des comptes).\n" + SIGNATURE
    )
    return subject, to_person, to_manager


def _due(session: Session, today: date) -> Sequence[tuple[str, date]]:
    rows = session.execute(
        sa.select(Habilitation.user_id, Habilitation.ends_on)
        .join(User, User.id == Habilitation.user_id)
        .where(
            Habilitation.ends_on.is_not(None),
            Habilitation.ends_on <= today + timedelta(days=max(NOTICE_DAYS)),
            User.status.in_((AccountStatus.ACTIVE, AccountStatus.PENDING)),
        )
        .order_by(Habilitation.ends_on, Habilitation.user_id)
    ).all()
    session.commit()
    return [(user_id, ends_on) for user_id, ends_on in rows if ends_on is not None]


def enforce_habilitation_ends(
    session: Session,
    svc: Services,
    now: datetime,
    ctx: audit.Context,
    *,
    dry_run: bool = False,
) -> HabilitationReport:
    """Notify 14 days and 1 day before an end date; suspend on the day."""
    today = today_in_paris(now)
    report = HabilitationReport()
    for user_id, ends_on in _due(session, today):
        left = (ends_on - today).days
        if left <= 0:
            if dry_run:
                report.suspended += 1
                continue
            # Unless a manager moved the end date meanwhile.
            still_due = sa.exists().where(
                Habilitation.user_id == User.id, Habilitation.ends_on <= today
            )
            done = suspend_by_job(
                session,
                svc,
                user_id,
                SuspensionReason.HABILITATION_END,
                ctx,
                now,
                still_due=still_due,
            )
            if done is not None:
                report.suspended += 1
                report.user_ids.append(user_id)
                report.mails_sent += done.mails_sent
                report.mails_failed += done.mails_failed
            continue
        # The 1-day notice starts where the 14-day one ends: a late run sends the nearer only.
        days = 1 if left <= 1 else 14
        if dry_run:
            report.notices[days] += 1
            continue
        if not _claim_notice(session, user_id, ends_on, days, now):
            continue  # another run sent it first
        user = session.get(User, user_id, populate_existing=True)
        if user is None:  # pragma: no cover - accounts are never deleted
            continue
        report.notices[days] += 1
        report.user_ids.append(user_id)
        subject, to_person, to_manager = _notice_mail(user, ends_on, days)
        audit.record(
            session,
            AuditAction.ACCOUNT_NOTICE_SENT,
            context=ctx,
            target=audit.Target("user", user.id, user.organisation.departement_code),
            details={"reason": "habilitation_end", "days": days, "ends_on": ends_on.isoformat()},
            at=now,
        )
        session.commit()
        sent, failed = notify(
            svc,
            [(user.email, to_person)] + [(m, to_manager) for m in managers_of(session, user)],
            subject,
        )
        report.mails_sent += sent
        report.mails_failed += failed
    return report


# --- the signed form ------------------------------------------------------------------------

FORM_MAX_BYTES = 10 * 1024 * 1024
FORM_PREFIX = "habilitations/"
# The key-encryption key of an organisation without a département of its own (France Travail
# without territory, the platform): "00" is no département's code, so it is no space's key.
PLATFORM_KEY = "00"


def form_key_departement(org: Organisation) -> str:
    """Whose key-encryption key wraps the forms of *org*'s accounts."""
    if org.departement_code:
        return org.departement_code
    codes = sorted(t.departement_code for t in org.territory)
    return codes[0] if codes else PLATFORM_KEY


def store_form(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    content: bytes,
    *,
    antivirus: Antivirus,
    actor: audit.Actor,
    ctx: audit.Context,
    now: datetime,
) -> None:
    """Encrypt and store the signed habilitation form (a PDF of at most 10 Mio) of *user*,
    replacing (and destroying) the previous one; commits.

    Managers open it later: it is checked as a deposited PDF is (active content, then clamd)
    before it is stored. While clamd is unavailable it is refused, unless the audited bypass
    (FILR_ANTIVIRUS_BYPASS) is on. A signature found raises the alert of an infected deposit
    (`malware_detected`, e-mailed at once), audited `account:habilitation:form-infected`.
    """
    hab = user.habilitation
    if hab is None:
        raise HabilitationError("Renseignez d'abord l'habilitation du compte.")
    if not content.startswith(b"%PDF-") or len(content) > FORM_MAX_BYTES:
        raise HabilitationError("Le formulaire doit être un fichier PDF de 10 Mo au plus.")
    finding = check_pdf(content)
    if finding is not None:
        raise HabilitationError(finding.message_fr)
    scan = _scan_form(session, antivirus, content, user, actor=actor, ctx=ctx)
    departement = form_key_departement(user.organisation)
    object_key = FORM_PREFIX + new_id()
    # The keyring writes through its own connection: no transaction of ours may hold the
    # database meanwhile (SQLite has one writer).
    previous = hab.form_object_key
    session.commit()
    store.keyring.ensure(departement)
    store.put(object_key, [content], departement=departement)
    try:
        # Of two replacements at once, one wins; the other's object is destroyed below.
        won = session.execute(
            sa.update(Habilitation)
            .where(
                Habilitation.user_id == user.id,
                Habilitation.form_object_key.is_not_distinct_from(previous),
            )
            .values(form_object_key=object_key, form_size=len(content), form_uploaded_at=now)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            raise HabilitationError(
                "Un autre formulaire vient d'être enregistré pour ce compte : rechargez la page."
            )
        audit.record(
            session,
            AuditAction.ACCOUNT_HABILITATION_FORM_STORED,
            actor=actor,
            context=ctx,
            target=audit.Target("user", user.id, user.organisation.departement_code),
            details={"size": len(content), "replaced": previous is not None, "scan": scan},
        )
        session.commit()
    except BaseException:
        session.rollback()
        # Nothing references the new object: destroyed now (or by the orphan cleanup).
        with contextlib.suppress(storage.StorageError):
            store.delete(object_key)
        raise
    session.expire(hab)
    if previous is not None:
        store.delete(previous)  # crypto-shredded, then removed


def _scan_form(
    session: Session,
    antivirus: Antivirus,
    content: bytes,
    user: User,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
) -> str:
    """clamd's verdict on a form: "clean", or "bypassed" (clamd down, bypass on); refused
    otherwise (fail closed), with an alert when clamd found a signature."""
    clamd = antivirus.client
    try:
        verdict = clamd.scan([content])
    except ClamdUnavailable:
        if antivirus.bypass and not clamd.ping():
            return "bypassed"
        raise HabilitationError(
            "L'antivirus est indisponible : le formulaire ne peut pas être vérifié ni "
            "enregistré pour l'instant. Réessayez dans quelques minutes."
        ) from None
    if verdict.signature is not None:
        _report_infected_form(session, antivirus, user, verdict.signature, len(content),
                              actor=actor, ctx=ctx)  # fmt: skip
        raise HabilitationError(
            f"Formulaire refusé : l'antivirus y a détecté « {verdict.signature} ». Il n'a pas "
            "été enregistré."
        )
    return "clean"


def _report_infected_form(
    session: Session,
    antivirus: Antivirus,
    user: User,
    signature: str,
    size: int,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
) -> None:
    """Audit the refusal and open (and e-mail) the alert of an infected deposit; commits."""
    departement = user.organisation.departement_code
    event = audit.record(
        session,
        AuditAction.ACCOUNT_HABILITATION_FORM_INFECTED,
        actor=actor,
        context=ctx,
        outcome=Outcome.DENIED,
        target=audit.Target("user", user.id, departement),
        details={"signature": signature, "size": size},
    )
    log.warning("antivirus: signature %s found in a habilitation form", signature)
    alert_at_once(
        session,
        antivirus.mailer,
        antivirus.base_url,
        Hit(
            kind=AlertKind.MALWARE_DETECTED,
            subject_type="user",
            subject_id=user.id,
            first_at=event.occurred_at,
            last_at=event.occurred_at,
            first_seq=event.seq,
            last_seq=event.seq,
            departement=departement,
            organisation_id=actor.org_id,
            details={"habilitation_form": True, "signature": signature},
        ),
        ctx,
    )


def open_form(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
) -> Iterator[bytes]:
    """The decrypted form of *user*, recorded as downloaded before the first byte; commits."""
    hab = user.habilitation
    if hab is None or hab.form_object_key is None:
        raise HabilitationError("Aucun formulaire enregistré.")
    session.commit()  # the keyring reads through its own connection (see `store_form`)
    chunks = store.open(hab.form_object_key)
    audit.record(
        session,
        AuditAction.ACCOUNT_HABILITATION_FORM_DOWNLOADED,
        actor=actor,
        context=ctx,
        target=audit.Target("user", user.id, user.organisation.departement_code),
    )
    session.commit()
    return chunks
