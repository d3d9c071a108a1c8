"""E-mails about deposits. They carry no personal data: no title, no file name, no message."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import User
from portal.deposits.models import Deposit
from portal.deposits.services import recipient_users
from portal.mail import MailError
from portal.orgs.departements import DEPARTEMENTS
from portal.services import Services

log = logging.getLogger("portal.notifications")
PARIS = ZoneInfo("Europe/Paris")


def deposit_mail(
    svc: Services, deposit: Deposit, *, reminder_days: int | None = None
) -> tuple[str, str]:
    """Subject and body announcing *deposit*: category, space, expiry and a link, nothing else."""
    link = f"{svc.settings.base_url}/depots/{deposit.id}"
    expires = deposit.expires_at.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")
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
        f"Espace : {space}\n"
        f"Disponible jusqu'au : {expires}\n\n"
        f"Pour le consulter, connectez-vous au portail :\n{link}\n\n"
        "Ce message ne contient volontairement aucune information sur le contenu du dépôt.\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    return subject, body


def _send(svc: Services, user: User, subject: str, body: str) -> bool:
    try:
        svc.mailer.send(user.email, subject, body)
    except MailError:
        log.warning("notification mail not delivered (user %s)", user.id)
        return False
    return True


def notify_recipients(session: Session, svc: Services, deposit: Deposit, ctx: audit.Context) -> int:
    """Tell every recipient a deposit awaits (digest subscribers get it in their daily digest)."""
    subject, body = deposit_mail(svc, deposit)
    sent = failed = digest = 0
    for user in recipient_users(session, deposit):
        if user.daily_digest:
            digest += 1
        elif _send(svc, user, subject, body):
            sent += 1
        else:
            failed += 1
    audit.record(
        session,
        AuditAction.NOTIFICATION_SENT,
        context=ctx,
        outcome=Outcome.SUCCESS if not failed else Outcome.FAILURE,
        target=audit.Target("deposit", deposit.id, deposit.departement_code),
        details={"sent": sent, "failed": failed, "digest": digest},
    )
    session.commit()
    return sent
