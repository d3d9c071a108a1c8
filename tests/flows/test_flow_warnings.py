"""Warnings reach both sides: a flow written from the tables is delivered, its report shown."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from markupsafe import escape

from portal.flows.core.rules import READING_FIRST_OF_MONTH
from portal.flows.core.validator import paris_today
from tests.factories import Api, FlowWorld
from tests.flows.conftest import ClientFor, deposit_file

Apis = Callable[..., Api]


def _pecdh_from_the_tables(departement: str) -> bytes:
    today = paris_today()
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<flux>
  <entete>
    <fichier>PECD</fichier><Periodicite>H</Periodicite><departement>{departement}</departement>
    <date-reference>{today}</date-reference><date-fabrication>{today}</date-fabrication>
    <version>001,0</version>
  </entete>
  <dossier>
    <individu>
      <nir>X12</nir><nom-naissance>MARTIN</nom-naissance><prenom>ANNE</prenom>
      <certification-identité>O</certification-identité>
    </individu>
    <allocataire><code-pe>621</code-pe><identifiant-pe>1234567A</identifiant-pe></allocataire>
  </dossier>
  <fin><departement>{departement}</departement><date-reference>{today.replace(day=1)}</date-reference><nb-dossier>1</nb-dossier></fin>
</flux>
""".encode("latin-1")


def test_a_france_travail_flow_with_warnings_is_delivered_and_both_sides_see_them(
    app: Flask, fw: FlowWorld, client_for: ClientFor, api_for: Apis
) -> None:
    # Given a weekly PECDH written word for word from the tables, with a NIR of "max 13 AN"
    # that is no NIR, its footer on the first of the month
    data = _pecdh_from_the_tables("62")
    tech_ft, tech62 = client_for(fw.tech_ft), client_for(fw.tech62)

    # When France Travail deposits it in the space of 62
    response = deposit_file(tech_ft, "62", data, flow_type="PECDH")

    # Then it is delivered, with its warnings
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["is_valid"] is True and body["error_count"] == 0
    assert body["warning_count"] == 3  # the NIR, two spellings
    # and both sides read the same warnings and the reading of the tables, on the page
    for client in (tech_ft, tech62):
        page = client.get(body["url"]).get_data(as_text=True)
        assert "field.nir" in page and "structure.spelling" in page
        assert "avertissement" in page and "certification-identite" in page
        assert 'id="readings"' in page and str(escape(READING_FIRST_OF_MONTH)) in page
    # and through the API
    for user in (fw.tech_ft, fw.tech62):
        shown = api_for(user).get(f"/api/v1/flows/{body['id']}").json
        assert shown is not None and shown["warning_count"] == 3
        assert {i["rule"] for i in shown["issues"]} == {"field.nir", "structure.spelling"}
        assert {i["severity"] for i in shown["issues"]} == {"warning"}
        assert shown["readings"] == {"fin/date-reference": READING_FIRST_OF_MONTH}
