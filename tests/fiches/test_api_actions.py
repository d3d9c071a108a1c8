"""The fiche's actions through the API: a draft, its attachments (checked, encrypted, read
back), sending it, forwarding to a mandated provider and the decision; 404 on every new route
outside the fiche; the fiche jaune's PPAE required as the convention asks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

from audit.models import AuditEvent
from portal.accounts.models import Role
from portal.container import services
from portal.db import db
from portal.fiches import services as fiches
from portal.orgs.models import OrgKind
from portal.settings import Settings
from tests.api.conftest import assert_problem, bare_client, make_token
from tests.api.test_openapi import assert_documented
from tests.factories import Account, Api, Cast, Factory, member, org
from tests.fiches.conftest import CAF, NOM, PRENOM, FicheWorld, bilaterale_values
from tests.support.clamd import FILR_SIGNATURE, FILR_TEST_STRING
from tests.support.pdf import make_pdf
from tests.support.services import SmtpSink

Apis = Callable[..., Api]
PDF_HEADERS = {"Content-Type": "application/pdf"}


@dataclass
class Checked(Api):
    """A script whose every answer must be one the OpenAPI document announces, in its shape."""

    doc: dict[str, Any] = field(default_factory=dict)

    def _checked(self, method: str, path: str, response: TestResponse) -> TestResponse:
        bare = path.split("?")[0].removeprefix("/api/v1")
        [template] = [
            t for t in self.doc["paths"] if re.fullmatch(re.sub(r"{\w+}", "[^/]+", t), bare)
        ]
        assert_documented(self.doc, template, method, response)
        return response

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self._checked("get", path, super().get(path, headers, **kw))

    def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self._checked("post", path, super().post(path, headers, **kw))

    def put(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self._checked("put", path, super().put(path, headers, **kw))


@pytest.fixture
def checked_for(api_for: Apis) -> Callable[..., Checked]:
    doc: dict[str, Any] = {}

    def make(account: Account, scopes: Iterable[str] = ("read", "deposit")) -> Checked:
        api = api_for(account, scopes)
        if not doc:
            doc.update(api.get("/api/v1/openapi.json").get_json())
        return Checked(api.client, api.token, doc)

    return make


def _errors(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["detail"] for e in problem["errors"]}


def test_a_draft_gets_its_pdf_is_sent_forwarded_and_decided_and_no_outsider_sees_a_route(
    app: Flask, fw: FicheWorld, checked_for: Callable[..., Checked], smtp: SmtpSink
) -> None:
    api_for = checked_for
    adviser = api_for(fw.adviser)
    body = {"form": "liaison-bilaterale", "departement": "62", "recipient": fw.cd62}
    # A draft: missing values are allowed, a wrong one refuses it (nothing kept).
    partial = {k: v for k, v in bilaterale_values(fw).items() if k != "attestation_signee"}
    refused = adviser.post(
        "/api/v1/fiches",
        json={**body, "draft": True, "values": {**partial, "identifiant_caf": "1"}},
    )
    assert list(_errors(assert_problem(refused, 422, "invalid"))) == ["identifiant_caf"]
    created = adviser.post("/api/v1/fiches", json={**body, "draft": True, "values": partial})
    assert created.status_code == 201, created.get_json()
    draft = created.get_json()
    fiche_id = draft["id"]
    assert draft["state"] == "draft" and draft["attachments"] == []
    # Sending it incomplete says which field is missing.
    missing = assert_problem(adviser.post(f"/api/v1/fiches/{fiche_id}/send"), 422, "invalid")
    assert _errors(missing) == {
        "attestation_signee": "Cette case doit être cochée pour envoyer la fiche."
    }
    # Attachments: the raw body, checked as on the web, encrypted.
    pieces = f"/api/v1/fiches/{fiche_id}/attachments"
    problem = assert_problem(
        adviser.put(f"{pieces}/attestation_scan", data=b"pas un pdf", headers=PDF_HEADERS),
        422,
        "file_refused",
    )
    assert list(_errors(problem)) == ["attestation_scan"]
    infected = make_pdf([b"<< >>"], streams={4: FILR_TEST_STRING})
    problem = assert_problem(
        adviser.put(f"{pieces}/attestation_scan", data=infected, headers=PDF_HEADERS),
        422,
        "file_infected",
    )
    assert FILR_SIGNATURE in problem["detail"]
    active = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >>")
    assert_problem(
        adviser.put(f"{pieces}/attestation_scan", data=active, headers=PDF_HEADERS),
        422,
        "file_refused",
    )
    big = b"%PDF-" + b"0" * fiches.ATTACHMENT_MAX_BYTES
    assert_problem(
        adviser.put(f"{pieces}/attestation_scan", data=big, headers=PDF_HEADERS),
        413,
        "file_too_large",
    )
    assert_problem(  # not an attachment field
        adviser.put(f"{pieces}/demandeur", data=make_pdf(), headers=PDF_HEADERS), 422, "invalid"
    )
    pdf = make_pdf(padding=50)
    stored = adviser.put(f"{pieces}/attestation_scan", data=pdf, headers=PDF_HEADERS)
    assert stored.status_code == 201, stored.get_json()
    assert stored.headers["Location"] == f"{pieces}/attestation_scan"
    with app.app_context():
        [piece] = [p for p in fiches.attachments_of(db.session, fiche_id) if p.object_key]
        assert pdf not in b"".join(services().store.inner.get(piece.object_key or ""))
    assert adviser.get(f"{pieces}/attestation_scan").data == pdf
    # Completed by replacing its values: the attachment joined stays.
    update = f"/api/v1/fiches/{fiche_id}"
    wrong = adviser.put(update, json={"values": {**partial, "enfants_a_charge": "deux"}})
    assert list(_errors(assert_problem(wrong, 422, "invalid"))) == ["enfants_a_charge"]
    assert_problem(adviser.put(update, json={"values": []}), 422, "invalid")
    completed = adviser.put(update, json={"values": bilaterale_values(fw)})
    assert completed.status_code == 200, completed.get_json()
    assert [a["field"] for a in completed.get_json()["attachments"]] == ["attestation_scan"]
    sent = adviser.post(f"/api/v1/fiches/{fiche_id}/send")
    assert sent.status_code == 200, sent.get_json()
    assert sent.get_json()["state"] == "sent"
    assert [a["field"] for a in sent.get_json()["attachments"]] == ["attestation_scan"]
    assert_problem(adviser.post(f"/api/v1/fiches/{fiche_id}/send"), 422, "invalid")
    assert_problem(  # a sent fiche takes no more attachment
        adviser.put(f"{pieces}/attestation_scan", data=pdf, headers=PDF_HEADERS), 422, "invalid"
    )

    # Outside the fiche (a provider and the SLAI of 59, a provider of 62 it was not forwarded
    # to), every new route answers 404, as for an unknown fiche.
    unknown = "0" * 32
    decision_body = {"decision": "oui", "decided_on": "2026-12-07"}
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("post", f"/api/v1/fiches/{fiche_id}/send", None),
        ("put", f"/api/v1/fiches/{fiche_id}", {"values": {}}),
        ("post", f"/api/v1/fiches/{fiche_id}/decision", decision_body),
        ("post", f"/api/v1/fiches/{fiche_id}/forward", {"provider": fw.other62}),
        ("put", f"{pieces}/attestation_scan", None),
        ("get", f"{pieces}/attestation_scan", None),
    ]  # fmt: skip
    slai = api_for(fw.slai62)
    for account in (fw.referent59, fw.slai59, fw.other_referent62):
        outsider = api_for(account)
        for method, path, payload in routes:
            for target in (path, path.replace(fiche_id, unknown)):
                kw = {"json": payload} if payload else {"data": pdf, "headers": PDF_HEADERS}
                answer = getattr(outsider, method)(target, **kw)
                assert_problem(answer, 404, "not_found")
    # The recipient reads the attachment; an unknown field is a 404 too.
    assert slai.get(f"{pieces}/attestation_scan").data == pdf
    assert_problem(slai.get(f"{pieces}/ppae"), 404, "not_found")
    # A read-only token may not act.
    reader = api_for(fw.slai62, scopes=["read"])
    assert_problem(
        reader.post(f"/api/v1/fiches/{fiche_id}/forward", json={"provider": fw.provider62}),
        403,
        "insufficient_scope",
    )

    # Forwarding: only to a provider the département mandates, once.
    forward = f"/api/v1/fiches/{fiche_id}/forward"
    not_mandated = slai.post(forward, json={"provider": fw.provider59})
    assert list(_errors(assert_problem(not_mandated, 422, "invalid"))) == ["provider"]
    assert_problem(slai.post(forward, json={}), 422, "invalid")
    assert_problem(slai.post(forward, data="x"), 400, "invalid")
    assert_problem(adviser.post(forward, json={"provider": fw.provider62}), 422, "invalid")
    forwarded = slai.post(forward, json={"provider": fw.provider62})
    assert forwarded.status_code == 200, forwarded.get_json()
    assert forwarded.get_json()["forwarded_to"] == "Asso Insertion 62"
    assert_problem(slai.post(forward, json={"provider": fw.other62}), 422, "invalid")
    referent = api_for(fw.referent62)
    assert referent.get(f"{pieces}/attestation_scan").data == pdf
    assert_problem(api_for(fw.other_referent62).get(f"{pieces}/attestation_scan"), 404, "not_found")

    # The decision: the receiving side only, OUI / NON and a date.
    decision = f"/api/v1/fiches/{fiche_id}/decision"
    wrong = slai.post(decision, json={"decision": "peut-être", "decided_on": "hier"})
    assert set(_errors(assert_problem(wrong, 422, "invalid"))) == {"decision", "decided_on"}
    assert_problem(
        adviser.post(decision, json={"decision": "oui", "decided_on": "2026-12-07"}),
        422,
        "invalid",
    )
    smtp.clear()
    decided = slai.post(decision, json={"decision": "OUI", "decided_on": "2026-12-07"})
    assert decided.status_code == 200, decided.get_json()
    assert decided.get_json()["state"] == "accepted"
    assert decided.get_json()["decided_on"] == "2026-12-07"
    [told] = [m for m in smtp.messages if fw.adviser.email in m["To"]]
    assert NOM not in told.as_string()
    assert_problem(
        slai.post(decision, json={"decision": "non", "decided_on": "2026-12-07"}), 422, "invalid"
    )
    seen = adviser.get(f"/api/v1/fiches/{fiche_id}").get_json()
    assert seen["state"] == "accepted" and seen["forwarded_to"] == "Asso Insertion 62"
    # The services audited it all, without a value of the fiche.
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.details).where(AuditEvent.target_id == fiche_id)
        ).all()
    actions = [r.action for r in rows]
    assert {"fiche:sent", "fiche:forwarded", "fiche:decided", "fiche:draft-saved"} <= set(actions)
    assert any(r.action == "fiche:viewed" and "attachment" in r.details for r in rows)
    assert NOM not in str(rows) and CAF not in str(rows) and PRENOM not in str(rows)


@dataclass
class HautRhin(Cast):
    cd68: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 68", "68")]
    ft68: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT Mulhouse", territory=("68",))]
    adviser68: Annotated[Account, member("ft68", Role.AGENT, name="Conseil Mulhouse")]
    slai68: Annotated[Account, member("cd68", Role.AGENT, name="Sylvie Slai")]


def test_the_fiche_jaune_is_sent_only_with_its_ppae(
    app: Flask, factory: Factory, checked_for: Callable[..., Checked]
) -> None:
    api_for = checked_for
    hr = HautRhin.build(factory)
    adviser = api_for(hr.adviser68)
    values = {
        "date_fiche": "2026-12-01",
        "referent": hr.adviser68.id,
        "demandeur": {"nom": NOM, "prenom": PRENOM},
        "date_naissance": "1990-04-12",
        "identifiant_ft": "1234567A",
        "motif": "mainlevee",
        "date_reprise_contact": "2026-11-30",
        "attestation_signee": True,
    }
    body = {"form": "haut-rhin-fiche-jaune", "departement": "68", "recipient": hr.cd68}
    refused = adviser.post("/api/v1/fiches", json={**body, "values": values})
    assert _errors(assert_problem(refused, 422, "invalid")) == {"ppae": "Ce champ est obligatoire."}
    created = adviser.post("/api/v1/fiches", json={**body, "values": values, "draft": True})
    assert created.status_code == 201, created.get_json()
    fiche_id = created.get_json()["id"]
    assert_problem(adviser.post(f"/api/v1/fiches/{fiche_id}/send"), 422, "invalid")
    ppae = make_pdf(padding=10)
    stored = adviser.put(
        f"/api/v1/fiches/{fiche_id}/attachments/ppae", data=ppae, headers=PDF_HEADERS
    )
    assert stored.status_code == 201, stored.get_json()
    sent = adviser.post(f"/api/v1/fiches/{fiche_id}/send")
    assert sent.status_code == 200, sent.get_json()
    slai = api_for(hr.slai68)
    assert slai.get(f"/api/v1/fiches/{fiche_id}/attachments/ppae").data == ppae


def test_while_clamd_is_down_no_attachment_is_stored_unless_the_bypass_is_on(
    app: Flask,
    fw: FicheWorld,
    api_for: Apis,
    make_app: Callable[..., Flask],
    settings: Settings,
) -> None:
    body = {"form": "liaison-bilaterale", "departement": "62", "recipient": fw.cd62}
    created = api_for(fw.adviser).post(
        "/api/v1/fiches", json={**body, "draft": True, "values": bilaterale_values(fw)}
    )
    piece = f"/api/v1/fiches/{created.get_json()['id']}/attachments/attestation_scan"
    no_clamd = f"unix://{settings.data_dir}/no-clamd.sock"
    down = make_app(clamd_url=no_clamd)
    api = Api(bare_client(down), make_token(down, fw.adviser))
    problem = assert_problem(
        api.put(piece, data=make_pdf(), headers=PDF_HEADERS), 503, "antivirus_unavailable"
    )
    assert "antivirus est indisponible" in problem["detail"]
    with app.app_context():
        assert fiches.attachments_of(db.session, created.get_json()["id"]) == []
    bypassing = make_app(clamd_url=no_clamd, antivirus_bypass=True)
    api = Api(bare_client(bypassing), make_token(bypassing, fw.adviser))
    assert api.put(piece, data=make_pdf(), headers=PDF_HEADERS).status_code == 201
    with app.app_context():
        [stored] = fiches.attachments_of(db.session, created.get_json()["id"])
        assert stored.scan == "bypassed"
