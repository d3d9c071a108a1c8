"""Outgoing mail: both mailers speak one error family."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

import pytest

from portal.mail import FolderMailer, MailError


def test_folder_mailer_writes_one_complete_message(tmp_path: Path) -> None:
    mailer = FolderMailer(tmp_path / "mails", "filr@example.org")

    mailer.send("agent@example.org", "Un dépôt vous attend", "Bonjour,\nconnectez-vous.")

    files = list((tmp_path / "mails").iterdir())
    assert [f.suffix for f in files] == [".eml"]
    msg = message_from_bytes(files[0].read_bytes())
    assert msg["To"] == "agent@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_folder_mailer_failure_is_a_mail_error_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    # Given a mail folder that cannot be written (a file stands where the folder should be)
    blocked = tmp_path / "mails"
    blocked.write_bytes(b"")
    mailer = FolderMailer(blocked, "filr@example.org")

    # When a message is sent, Then the caller sees the same error family as with SMTP
    with pytest.raises(MailError):
        mailer.send("agent@example.org", "Objet", "Corps")
