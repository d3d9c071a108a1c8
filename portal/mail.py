"""Outgoing e-mail: SMTP in production, a folder of .eml files on the embedded default."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from portal.settings import Settings

log = logging.getLogger("portal.mail")


class MailError(RuntimeError):
    """A message could not be handed over."""


class Mailer(Protocol):
    """Sends one plain-text message."""

    def send(self, to: str, subject: str, body: str) -> None: ...


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="filr.localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


class SmtpMailer:
    """Delivers through an SMTP relay (STARTTLS and authentication when configured)."""

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("no SMTP host configured")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.starttls = settings.smtp_starttls
        self.sender = settings.mail_from

    def send(self, to: str, subject: str, body: str) -> None:
        msg = _message(self.sender, to, subject, body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user and self.password:
                    smtp.login(self.user, self.password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            raise MailError(f"SMTP delivery to relay {self.host}:{self.port} failed") from e


class FolderMailer:
    """Writes each message to a folder (development only; say so in the README)."""

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        msg = _message(self.sender, to, subject, body)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise MailError(f"the mail folder {self.folder} cannot be created") from e
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.folder / (name + ".tmp")
        try:
            tmp.write_bytes(bytes(msg))
            os.replace(tmp, self.folder / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise MailError(f"writing a message to the mail folder {self.folder} failed") from e


def deliver(mailer: Mailer, to: str, subject: str, body: str, *, what: str, about: str) -> bool:
    """Send one message; a failure is logged (ids only, never the address) and returns False.

    For mails whose loss must not undo the action that caused them (notifications, reminders):
    the caller counts the failures and may try again at its next run.
    """
    try:
        mailer.send(to, subject, body)
    except MailError:
        log.warning("%s not delivered (%s)", what, about)
        return False
    return True


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when a host is configured, otherwise the mail folder."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return FolderMailer(settings.mail_dir or settings.data_dir / "mails", settings.mail_from)
