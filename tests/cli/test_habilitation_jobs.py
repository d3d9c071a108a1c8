"""`filr jobs habilitations` and `inactive-accounts` with `--as-of`, `filr users show` and
`filr users habilitation`."""

from __future__ import annotations

import json
from email.header import decode_header, make_header

from flask import Flask

from portal.settings import Settings
from tests.accounts.test_inactivity import _after, _last_login
from tests.accounts.test_review import Cast
from tests.cli.conftest import filr
from tests.factories import Factory
from tests.support.services import SmtpSink


def test_the_command_takes_as_of_and_users_show_prints_the_account(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    agent = factory.user(factory.org(), email="agent@cd62.example.org")
    _last_login(app, agent)
    out = filr(["jobs", "inactive-accounts", "--as-of", _after(53).isoformat()]).output
    assert "1 avis, 0 comptes suspendus" in out
    again = filr(["jobs", "inactive-accounts", "--as-of", _after(53).isoformat()]).output
    assert "0 avis" in again
    filr(["jobs", "inactive-accounts", "--as-of", _after(60).isoformat()])
    filr(
        [
            "users",
            "habilitation",
            agent.email,
            "--function",
            "referent_rsa",
            "--granted-on",
            "2026-11-02",
            "--ends-on",
            "2027-10-31",
        ]
    )
    shown = json.loads(filr(["users", "show", agent.email, "--json"]).output)
    assert shown["status"] == "suspended" and shown["suspension_reason"] == "inactivity"
    assert shown["habilitation"]["function"] == "referent_rsa"
    assert shown["habilitation"]["ends_on"] == "2027-10-31"
    assert shown["last_login_at"].startswith("2027-01-10")
    text = filr(["users", "show", agent.email]).output
    assert "Référent RSA" in text and "faute d'utilisation" in text
    filr(["jobs", "inactive-accounts", "--as-of", "10/01/2027"], code=2)


def test_the_habilitation_job_suspends_on_the_end_date_as_of_that_day(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    agent = factory.user(factory.org(), email="agent@cd62.example.org")
    filr(["users", "habilitation", agent.email, "--function", "autre", "--function-label",
          "Stagiaire", "--granted-on", "2026-11-02", "--ends-on", "2027-03-31"])  # fmt: skip
    dry = filr(["jobs", "habilitations", "--as-of", "2027-03-31", "--dry-run"]).output
    assert dry.startswith("[essai]") and "1 comptes suspendus" in dry
    assert (
        "0 avis à 14 jours, 1 à 1 jour"
        in filr(["jobs", "habilitations", "--as-of", "2027-03-30"]).output
    )
    assert "1 comptes suspendus" in filr(["jobs", "habilitations", "--as-of", "2027-03-31"]).output
    shown = json.loads(filr(["users", "show", agent.email, "--json"]).output)
    assert shown["status"] == "suspended"
    assert shown["suspension_reason"] == "habilitation_end"
    assert shown["review"] is None
    assert shown["habilitation"]["function_label"] == "Stagiaire"
    bad = filr(["users", "habilitation", agent.email, "--function", "directeur_agence"], code=1)
    assert "Fonction inconnue" in bad.output


def test_a_review_is_opened_by_hand_from_the_command_line_once(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    cast = Cast(factory)
    out = filr(["orgs", "review", cast.cd62, "--days", "15"]).output
    assert "Revue ouverte pour CD 62" in out
    assert "déjà ouverte" in filr(["orgs", "review", cast.cd62], code=1).output
    subject = str(make_header(decode_header(smtp.to(cast.manager62.email)[0]["Subject"])))
    assert subject == "Fil'R : revue des habilitations ouverte"
    out = filr(["jobs", "review", "--as-of", "2027-03-01", "--dry-run"]).output
    assert out.startswith("[essai]") and "1 revues ouvertes" in out  # CD 59 only
    shown = json.loads(filr(["users", "show", cast.agents62[0].email, "--json"]).output)
    assert shown["review"]["campaign_status"] == "open" and shown["review"]["decision"] is None
    assert "sans décision" in filr(["users", "show", cast.agents62[0].email]).output


def test_orgs_list_json_prints_ids_kinds_and_departements(
    cli_env: Settings, app: Flask, factory: Factory
) -> None:
    from portal.orgs.models import OrgKind

    cd62 = factory.org(name="CD 62")
    ft = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("59", "62"), name="FT HdF")
    listed = json.loads(filr(["orgs", "list", "--json"]).output)
    by_id = {o["id"]: o for o in listed}
    assert by_id[cd62]["kind"] == "departement" and by_id[cd62]["departements"] == ["62"]
    assert by_id[ft]["departements"] == ["59", "62"] and by_id[ft]["name"] == "FT HdF"


def test_the_incident_job_reminds_as_of_a_day(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    from datetime import UTC, datetime

    import audit
    from portal.accounts.models import Role, User
    from portal.db import db
    from portal.securite.incidents import NewIncident, create_incident

    officer = factory.user(
        factory.org(name="CD 62"), (Role.SECURITE,), email="rssi@cd62.example.org"
    )
    with app.app_context():
        user = db.session.get(User, officer.id)
        assert user is not None
        create_incident(
            db.session,
            user,
            NewIncident(
                "violation",
                "Fuite",
                "",
                datetime(2026, 10, 24, 8, 0, tzinfo=UTC),
                frozenset({"62"}),
                36,
            ),
            ctx=audit.NO_CONTEXT,
            now=datetime(2026, 10, 24, 9, 0, tzinfo=UTC),
        )
    # 06:00 in Paris on 25 October is 05:00 UTC: 15 hours before the 20:00 UTC deadline
    assert "0 rappel(s)" in filr(["jobs", "incidents", "--as-of", "2026-10-25"]).output
    # 26 October, 05:00 UTC: the partners' deadline passed (reminded), the CNIL's is 27 hours off
    assert "1 rappel(s)" in filr(["jobs", "incidents", "--as-of", "2026-10-26"]).output
    # 27 October, 05:00 UTC: the CNIL's is 3 hours off
    assert "1 rappel(s)" in filr(["jobs", "incidents", "--as-of", "2026-10-27"]).output
    assert "0 rappel(s)" in filr(["jobs", "incidents", "--as-of", "2026-10-28"]).output
    assert len(smtp.to(officer.email)) == 2
