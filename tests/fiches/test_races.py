"""Sequences and races around a sent fiche: a correction sent after the decision, a draft
saved while it is being sent, a forward after the fiche was withdrawn."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

import audit
from audit.models import AuditEvent
from portal.accounts.models import User
from portal.container import services
from portal.db import db
from portal.fiches import services as fiches
from portal.fiches.models import Fiche
from tests.conftest import reread
from tests.fiches.conftest import FicheWorld, bilaterale_values

CTX = audit.NO_CONTEXT
DECISION = {"entree_accompagnement": "oui", "date_decision": "2026-12-05"}


@pytest.fixture
def backend() -> str:
    return "sqlite"


def _user(account_id: str) -> User:
    user = db.session.get(User, account_id)
    assert user is not None
    return user


def _fiche(fiche_id: str) -> Fiche:
    fiche = db.session.get(Fiche, fiche_id)
    assert fiche is not None
    return fiche


def _sent(fw: FicheWorld) -> str:
    draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, bilaterale_values(fw))
    return fiches.submit(db.session, services(), _user(fw.adviser.id), draft, CTX).id


def _actions(fiche_id: str) -> list[str]:
    return list(
        db.session.execute(
            sa.select(AuditEvent.action).where(AuditEvent.target_id == fiche_id)
        ).scalars()
    )


def test_a_correction_sent_after_the_decision_is_refused_and_the_decision_stands(
    app: Flask, fw: FicheWorld
) -> None:
    with app.app_context():
        svc = services()
        fiche_id = _sent(fw)
        correction = fiches.correct(db.session, svc, _user(fw.adviser.id), _fiche(fiche_id), CTX)
        correction_id = correction.id
        fiches.record_decision(
            db.session, svc, _user(fw.slai62.id), _fiche(fiche_id), DECISION, CTX
        )
        with pytest.raises(fiches.FicheError):
            fiches.send(db.session, svc, _user(fw.adviser.id), _fiche(correction_id), CTX)
        assert "fiche:withdrawn" not in _actions(fiche_id)
    old, new = reread(app, Fiche, fiche_id), reread(app, Fiche, correction_id)
    assert old.state == "accepted" and old.replaced_by_id is None
    assert new.state == "draft" and new.sent_at is None


def test_two_corrections_of_one_fiche_only_one_replaces_it(app: Flask, fw: FicheWorld) -> None:
    with app.app_context():
        svc = services()
        fiche_id = _sent(fw)
        adviser = _user(fw.adviser.id)
        first = fiches.correct(db.session, svc, adviser, _fiche(fiche_id), CTX).id
        second = fiches.correct(db.session, svc, adviser, _fiche(fiche_id), CTX).id
        fiches.send(db.session, svc, adviser, _fiche(first), CTX)
        with pytest.raises(fiches.FicheError):
            fiches.send(db.session, svc, adviser, _fiche(second), CTX)
        assert _actions(fiche_id).count("fiche:withdrawn") == 1
    assert reread(app, Fiche, fiche_id).replaced_by_id == first
    assert reread(app, Fiche, second).state == "draft"


def test_a_draft_saved_while_it_is_sent_does_not_change_the_sent_fiche(
    app: Flask, fw: FicheWorld
) -> None:
    with app.app_context():
        svc = services()
        adviser = _user(fw.adviser.id)
        values = bilaterale_values(fw)
        draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, values)
        fiche, _ = fiches.save_draft(db.session, svc, adviser, draft, CTX)
        fiche_id = fiche.id
        sent_key = fiche.values_key
    # Another request holds the draft as it was (a second tab saving it)…
    with app.app_context():
        stale = _fiche(fiche_id)
        assert stale.state == "draft"
        stale_user = _user(fw.adviser.id)
        db.session.expunge_all()  # kept as read, the transaction ended (SQLite's lock)
        db.session.commit()
        db.session.add_all([stale, stale_user])
        # …while the first one sends it.
        with Session(db.engine, expire_on_commit=False) as other:
            sender, sending = other.get(User, fw.adviser.id), other.get(Fiche, fiche_id)
            assert sender is not None and sending is not None
            fiches.send(other, services(), sender, sending, CTX)
        changed = fiches.Draft(
            "liaison-bilaterale@1", "62", fw.cd62, {**values, "identifiant_caf": "1111111"}
        )
        with pytest.raises(fiches.FicheError):
            fiches.save_draft(db.session, services(), stale_user, changed, CTX, fiche=stale)
    sent = reread(app, Fiche, fiche_id)
    assert sent.state == "sent" and sent.values_key == sent_key
    with app.app_context():
        assert (
            fiches.read_values(db.session, services().store, _fiche(fiche_id))["identifiant_caf"]
            == values["identifiant_caf"]
        )
        # The refused save left no object behind: only the sent values under the fiche.
        assert list(services().store.inner.list(f"fiches/{fiche_id}/")) == [sent_key]


def test_a_fiche_withdrawn_while_the_slai_forwards_it_is_not_forwarded(
    app: Flask, fw: FicheWorld
) -> None:
    with app.app_context():
        svc = services()
        fiche_id = _sent(fw)
        correction = fiches.correct(db.session, svc, _user(fw.adviser.id), _fiche(fiche_id), CTX)
        correction_id = correction.id
    # The SLAI's request holds the fiche as it was (received, not forwarded)…
    with app.app_context():
        stale, slai = _fiche(fiche_id), _user(fw.slai62.id)
        assert stale.state == "sent" and stale.forwarded_org_id is None
        db.session.expunge_all()
        db.session.commit()
        db.session.add_all([stale, slai])
        # …while the adviser sends the correction, which withdraws it.
        with Session(db.engine, expire_on_commit=False) as other:
            sender, sending = other.get(User, fw.adviser.id), other.get(Fiche, correction_id)
            assert sender is not None and sending is not None
            fiches.send(other, services(), sender, sending, CTX)
        with pytest.raises(fiches.FicheError):
            fiches.forward(db.session, services(), slai, stale, fw.provider62, CTX)
        assert "fiche:forwarded" not in _actions(fiche_id)
    old = reread(app, Fiche, fiche_id)
    assert old.state == "withdrawn" and old.forwarded_org_id is None


def test_a_save_landing_while_a_draft_is_checked_for_sending_makes_the_send_lose(
    app: Flask, fw: FicheWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the check of the values and the sending, another tab (or the API) saves the
    draft without the required acknowledgement: the send must not deliver unchecked values."""
    with app.app_context():
        svc = services()
        values = bilaterale_values(fw)
        draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, values)
        fiche, _ = fiches.save_draft(db.session, svc, _user(fw.adviser.id), draft, CTX)
        fiche_id = fiche.id
        real_validate = fiches.validate
        saved: list[bool] = []

        def validate_then_save_elsewhere(form, given, **kwargs):  # type: ignore[no-untyped-def]
            errors = real_validate(form, given, **kwargs)
            if not saved and kwargs.get("allowed") is not None:  # the send's check
                saved.append(True)
                db.session.commit()  # as another server would (PostgreSQL)
                with Session(db.engine, expire_on_commit=False) as other:
                    user, row = other.get(User, fw.adviser.id), other.get(Fiche, fiche_id)
                    assert user is not None and row is not None
                    incomplete = {k: v for k, v in values.items() if k != "attestation_signee"}
                    later = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, incomplete)
                    fiches.save_draft(other, svc, user, later, CTX, fiche=row)
            return errors

        monkeypatch.setattr(fiches, "validate", validate_then_save_elsewhere)
        with pytest.raises(fiches.FicheError):
            fiches.send(db.session, svc, _user(fw.adviser.id), _fiche(fiche_id), CTX)
        monkeypatch.setattr(fiches, "validate", real_validate)
        assert saved
        fiche = reread(app, Fiche, fiche_id)
        assert fiche.state == "draft"
        assert "fiche:sent" not in _actions(fiche_id)


def test_a_pdf_removed_from_the_draft_never_reaches_the_recipient(
    app: Flask, fw: FicheWorld
) -> None:
    from tests.support.pdf import make_pdf

    with app.app_context():
        svc = services()
        adviser = _user(fw.adviser.id)
        values = bilaterale_values(fw)
        draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, values)
        fiche_id = fiches.create_draft(db.session, svc, adviser, draft, CTX).id
        wrong = make_pdf([b"<< >>"])  # say, another person's signed form
        attached = fiches.attach(
            db.session, svc, adviser, _fiche(fiche_id), "attestation_scan", wrong, CTX
        )
        attachment_id, object_key = attached.id, attached.object_key
        assert object_key is not None and fiches.live_attachment(
            db.session, _fiche(fiche_id), "attestation_scan"
        )
        # The sender removes it (the API's PUT naming the field null), then sends.
        removed = fiches.Draft(
            "liaison-bilaterale@1", "62", fw.cd62, {**values, "attestation_scan": None}
        )
        fiches.create_draft(db.session, svc, adviser, removed, CTX, fiche=_fiche(fiche_id))
        fiches.send(db.session, svc, _user(fw.adviser.id), _fiche(fiche_id), CTX)
        slai = _user(fw.slai62.id)
        seen = fiches.find_fiche(db.session, slai, fiche_id, CTX)
        assert seen is not None and seen.state == "sent"
        assert fiches.live_attachment(db.session, seen, "attestation_scan") is None
        assert fiches.open_attachment(db.session, svc, slai, seen, attachment_id, CTX) is None
        db.session.commit()  # the key store has its own connection (SQLite locks at BEGIN)
        assert not svc.store.exists(object_key)
