"""`filr orgs`: creation checks, listing, the national scope of France Travail."""

from __future__ import annotations

import json

from flask import Flask

from audit import AuditAction
from portal.db import db
from portal.orgs.models import Organisation
from portal.settings import Settings
from tests.cli.conftest import filr
from tests.conftest import audit_rows
from tests.factories import Factory, OfficerWorld


def test_orgs_national_flags_a_france_travail_structure_only(
    cli_env: Settings, app: Flask, factory: Factory
) -> None:
    world = OfficerWorld.build(factory)
    filr(["orgs", "national", world.ft62])
    with app.app_context():
        org = db.session.get(Organisation, world.ft62)
        assert org is not None and org.is_national
    filr(["orgs", "national", world.ft62, "--unset"])
    with app.app_context():
        org = db.session.get(Organisation, world.ft62)
        assert org is not None and not org.is_national
    assert "France Travail" in filr(["orgs", "national", world.org62], code=1).output
    assert len(audit_rows(app, AuditAction.ORGANISATION_UPDATED)) == 2


def test_create_checks_codes_and_names_and_audits_the_organisation(
    cli_env: Settings, app: Flask
) -> None:
    # Unknown code, missing département or territory: usage errors (exit 2), nothing created
    create = ["orgs", "create", "--name", "FT Nord"]
    out = filr([*create, "--kind", "france_travail", "--territory", "59,20"], code=2).output
    assert "code de département inconnu : 20" in out
    assert (
        "--territory est obligatoire" in filr([*create, "--kind", "france_travail"], code=2).output
    )
    assert (
        "--departement est obligatoire" in filr([*create, "--kind", "departement"], code=2).output
    )
    # A France Travail structure is created with its sorted territory, and audited once
    made = json.loads(
        filr([*create, "--kind", "france_travail", "--territory", "62,59,62", "--json"]).output
    )
    assert made["kind"] == "france_travail" and made["name"] == "FT Nord"
    [row] = audit_rows(app, AuditAction.ORGANISATION_CREATED)
    assert row.target_id == made["id"]
    assert json.loads(row.details) == {"kind": "france_travail", "territory": ["59", "62"]}
    # A second one of the same name is refused (exit 1)
    out = filr([*create, "--kind", "france_travail", "--territory", "59"], code=1).output
    assert "existe déjà" in out
    assert f"{made['id']}  france_travail  59,62" in filr(["orgs", "list"]).output


def test_orgs_proconnect_opens_and_closes_proconnect_and_audits_it(
    cli_env: Settings, app: Flask, factory: Factory
) -> None:
    org_id = factory.org()
    assert "connexion par ProConnect ouverte" in filr(["orgs", "proconnect", org_id]).output
    listed = {o["id"]: o for o in json.loads(filr(["orgs", "list", "--json"]).output)}
    assert listed[org_id]["proconnect"] is True
    assert "fermée" in filr(["orgs", "proconnect", org_id, "--desactiver"]).output
    with app.app_context():
        org = db.session.get(Organisation, org_id)
        assert org is not None and not org.proconnect_enabled
    created = json.loads(
        filr(
            ["orgs", "create", "--kind", "departement", "--departement", "59", "--name",
             "Département du Nord", "--proconnect", "--json"]
        ).output
    )  # fmt: skip
    with app.app_context():
        org = db.session.get(Organisation, created["id"])
        assert org is not None and org.proconnect_enabled
    details = [json.loads(r.details) for r in audit_rows(app, AuditAction.ORGANISATION_UPDATED)]
    assert details == [{"proconnect": True}, {"proconnect": False}, {"proconnect": True}]
