"""E-mails about deposits. They carry no personal data: no title, no file name."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import User
from portal.container import Services
from portal.deposits.models import Deposit
from portal.deposits.services import DepositError, publish, recipient_users
from portal.formats import datetime_fr
from portal.mail import deliver
from portal.orgs.departements import DEPARTEMENTS

PARIS = ZoneInfo("Europe/Paris")


def deposit_mail(
    svc: Services, deposit: Deposit, *, reminder_days: int | None = None, notice: str | None = None
) -> tuple[str, str]:
    """Subject and body announcing *deposit*: category, space, expiry and a link, nothing else."""
    link = f"{svc.settings.base_url}/depots/{deposit.id}"
    expires = datetime_fr(deposit.expires_at)
    space = f"{deposit.departement_code} — {DEPARTEMENTS[deposit.departement_code]}"
    if reminder_days is None:
        subject = f"Fil'R : un dépôt vous attend ({deposit.category_label})"
        intro = "Un nouveau dépôt vous attend sur Fil'R."
    else:
        subject = (
            f"Fil'R : un dépôt expire dans {reminder_days} jour{'s' if reminder_days > 1 else ''}"
        )
        intro = (
            "Un dépôt qui vous est adressé n'a pas encore été téléchargé et sera détruit "
            f"dans {reminder_days} jour{'s' if reminder_days > 1 else ''}."
        )
    body = (
        f"Bonjour,\n\n{intro}\n\n"
        f"Catégorie : {deposit.category_label}\n"
        # A label of the closed list (REASON_LABELS), never text typed by a person.
        + (f"Motif : {deposit.reason_label}\n" if deposit.reason_label else "")
        + f"Espace : {space}\n"
        f"Disponible jusqu'au : {expires}\n\n"
        + (f"{notice}\n\n" if notice else "")
        + f"Pour le consulter, connectez-vous au portail :\n{link}\n\n"
        "Ce message ne contient volontairement aucune information sur le contenu du dépôt.\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    return subject, body


def notify_recipients(
    session: Session,
    svc: Services,
    deposit: Deposit,
    ctx: audit.Context,
    *,
    notice: str | None = None,
) -> int:
    """Tell every recipient a deposit awaits (digest subscribers get it in their daily digest).

    *notice* (counts only, no personal data) is added to the mail and makes it immediate even
    for digest subscribers: a flow flagged by the sanity check must be seen before it is used.
    """
    subject, body = deposit_mail(svc, deposit, notice=notice)
    sent = failed = digest = 0
    for user in recipient_users(session, deposit):
        if user.daily_digest and notice is None:
            digest += 1
        elif deliver(
            svc.mailer, user.email, subject, body, what="notification mail", about=f"user {user.id}"
        ):
            sent += 1
        else:
            failed += 1
    audit.record(
        session,
        AuditAction.DEPOSIT_NOTIFICATION_SENT,
        # Sent on behalf of the sender, whose request published the deposit.
        actor=audit.Actor(deposit.sender_id, deposit.sender_org_id),
        context=ctx,
        outcome=Outcome.SUCCESS if not failed else Outcome.FAILURE,
        target=audit.Target("deposit", deposit.id, deposit.departement_code),
        details={"sent": sent, "failed": failed, "digest": digest},
    )
    session.commit()
    return sent


def publish_and_notify(
    session: Session, svc: Services, user: User, deposit: Deposit, ctx: audit.Context
) -> int | None:
    """`publish` the draft, commit, then e-mail its recipients; returns how many were sent.

    None when the deposit is held for the antivirus: its recipients are told when
    `filr jobs antivirus` publishes it. A refusal (DepositError) rolls back and propagates.
    """
    try:
        published = publish(session, user, deposit, ctx)
    except DepositError:
        session.rollback()
        raise
    session.commit()
    if not published:
        return None
    return notify_recipients(session, svc, deposit, ctx)
