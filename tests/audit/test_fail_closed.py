"""Fail closed: an action whose audit row cannot be written does not happen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import audit
from audit import AuditAction, AuditEvent
from portal.accounts.models import AccountStatus, Role, User
from portal.db import db
from portal.deposits.models import Deposit, DepositStatus
from portal.orgs.models import OrgKind
from tests.conftest import csrf_of, https, login, reset_totp_step
from tests.deposits.conftest import PDF, download, file_ids, sent_deposit
from tests.factories import Factory
from tests.support.services import SmtpSink

DOWN = "audit store down (test)"


@contextmanager
def audit_inserts_fail(app: Flask) -> Iterator[None]:
    """A trigger makes every INSERT into audit_event raise, as a full or broken store would."""
    engine = db.bound(app).engine
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION filr_test_audit_down() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{DOWN}'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER filr_test_audit_down BEFORE INSERT ON audit_event "
                "FOR EACH ROW EXECUTE FUNCTION filr_test_audit_down()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER filr_test_audit_down BEFORE INSERT ON audit_event "
                f"BEGIN SELECT RAISE(ABORT, '{DOWN}'); END"
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            on_table = " ON audit_event" if postgres else ""
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS filr_test_audit_down" + on_table)
            if postgres:
                conn.exec_driver_sql("DROP FUNCTION IF EXISTS filr_test_audit_down()")


def _refused(call: Callable[[], TestResponse]) -> None:
    # The database error reaches the portal's error handler: a generic 500 page, nothing done.
    response = call()
    assert response.status_code == 500
    assert DOWN not in response.get_data(as_text=True)


def _count(app: Flask, action: str) -> int:
    with app.app_context():
        return db.session.execute(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        ).scalar_one()


def test_suspension_does_not_happen_when_its_audit_row_cannot_be_written(
    app: Flask, client: FlaskClient, factory: Factory, login_as: Callable[..., FlaskClient]
) -> None:
    # Given a manager and a logged-in member of the same organisation
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    member = factory.user(org)
    member_client = login_as(member, on=https(app.test_client()))
    login_as(manager)
    token = csrf_of(client, f"/gestion/comptes/{member.id}")
    # When the audit trail refuses writes and the manager suspends the member
    with audit_inserts_fail(app):
        _refused(
            lambda: client.post(
                f"/gestion/comptes/{member.id}/suspendre", data={"csrf_token": token}
            )
        )
    # Then the account is still active, its session still works, and no row claims otherwise
    with app.app_context():
        user = db.session.get(User, member.id)
        assert user is not None and user.status == AccountStatus.ACTIVE
    assert member_client.get("/").status_code == 200
    assert _count(app, AuditAction.ACCOUNT_SUSPENDED) == 0


def test_withdrawal_does_not_happen_when_its_audit_row_cannot_be_written(
    app: Flask, factory: Factory, login_as: Callable[..., FlaskClient]
) -> None:
    # Given a deposit of 62 sent to France Travail
    cd62 = factory.org(OrgKind.DEPARTEMENT, "62")
    ft62 = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",))
    sender = login_as(factory.user(cd62), on=https(app.test_client()))
    recipient = login_as(factory.user(ft62), on=https(app.test_client()))
    deposit_id = sent_deposit(sender, [ft62])
    token = csrf_of(sender, f"/depots/{deposit_id}")
    # When the trail refuses writes and the sender withdraws it
    with audit_inserts_fail(app):
        _refused(lambda: sender.post(f"/depots/{deposit_id}/retirer", data={"csrf_token": token}))
    # Then the deposit is still available and its file still downloads intact
    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None and deposit.status == DepositStatus.AVAILABLE
        assert deposit.withdrawn_at is None
    response = download(recipient, deposit_id, file_ids(app, deposit_id)[0])
    assert response.status_code == 200 and response.get_data() == PDF
    assert _count(app, AuditAction.DEPOSIT_WITHDRAWN) == 0


def test_no_session_is_opened_when_the_login_cannot_be_audited(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    reset_totp_step(app, account)
    with audit_inserts_fail(app):
        _refused(lambda: login(client, account))
    # The user is not logged in, and may log in normally once the trail works again
    assert client.get("/").status_code == 302
    reset_totp_step(app, account)
    assert login(client, account).status_code == 302
    assert client.get("/").status_code == 200


def test_no_activation_mail_leaves_when_its_sending_cannot_be_audited(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[..., FlaskClient],
    smtp: SmtpSink,
) -> None:
    # Given a manager and a pending account of the same organisation
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    pending = factory.user(org, status=AccountStatus.PENDING)
    login_as(manager)
    token = csrf_of(client, f"/gestion/comptes/{pending.id}")
    smtp.clear()
    # When the trail refuses writes and the manager sends the activation link again
    with audit_inserts_fail(app):
        _refused(
            lambda: client.post(
                f"/gestion/comptes/{pending.id}/renvoyer-activation", data={"csrf_token": token}
            )
        )
    # Then no mail left, and no row claims one did
    assert smtp.to(pending.email) == []
    assert _count(app, AuditAction.ACCOUNT_ACTIVATION_SENT) == 0
    # And once the trail works, the same action sends the link and records it
    response = client.post(
        f"/gestion/comptes/{pending.id}/renvoyer-activation", data={"csrf_token": token}
    )
    assert response.status_code == 302
    assert len(smtp.to(pending.email)) == 1
    assert _count(app, AuditAction.ACCOUNT_ACTIVATION_SENT) == 1


def test_an_activation_mail_that_fails_is_recorded_as_failed(
    app: Flask, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal.accounts import services as accounts
    from portal.accounts.models import TokenPurpose
    from portal.auth import services as auth
    from portal.container import services
    from portal.mail import MailError

    pending = factory.user(factory.org(), status=AccountStatus.PENDING)
    with app.app_context():
        svc = services()

        def refuse(*args: object) -> None:
            raise MailError("mail server down (test)")

        monkeypatch.setattr(svc.mailer, "send", refuse)
        user = db.session.get(User, pending.id)
        assert user is not None
        new = accounts.NewAccount(user, auth.issue_token(db.session, user, TokenPurpose.ACTIVATION))
        with pytest.raises(MailError):
            accounts.send_activation(db.session, svc, new, audit.NO_CONTEXT, audit.SYSTEM)
        rows = db.session.execute(
            sa.select(AuditEvent.outcome)
            .where(AuditEvent.action == AuditAction.ACCOUNT_ACTIVATION_SENT)
            .order_by(AuditEvent.seq)
        ).scalars()
        assert list(rows) == ["success", "failure"]


def test_no_byte_of_a_file_leaves_when_its_download_cannot_be_audited(
    app: Flask, factory: Factory, login_as: Callable[..., FlaskClient]
) -> None:
    # Given a deposit of 62 sent to France Travail, and a download link in the recipient's hands
    cd62 = factory.org(OrgKind.DEPARTEMENT, "62")
    ft62 = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",))
    sender = login_as(factory.user(cd62), on=https(app.test_client()))
    recipient = login_as(factory.user(ft62), on=https(app.test_client()))
    deposit_id = sent_deposit(sender, [ft62])
    [file_id] = file_ids(app, deposit_id)
    token = csrf_of(recipient, f"/depots/{deposit_id}")
    link = recipient.post(
        f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token}
    ).headers["Location"]
    # When the trail refuses writes and the link is followed
    with audit_inserts_fail(app):
        response = recipient.get(link)
        body = response.get_data()
    # Then the answer is an error and not one byte of the file went out
    assert response.status_code == 500
    assert PDF[:16] not in body
    assert _count(app, AuditAction.DEPOSIT_DOWNLOAD_STARTED) == 0
    # And once the trail is back, the download is recorded before its first byte, received after
    response = recipient.get(link)
    stream = iter(response.response)
    assert _count(app, AuditAction.DEPOSIT_DOWNLOAD_STARTED) == 1
    assert _count(app, AuditAction.DEPOSIT_DOWNLOADED) == 0
    assert b"".join(stream) == PDF
    assert _count(app, AuditAction.DEPOSIT_DOWNLOADED) == 1
