"""Fiche tests run both stacks, as the deposit tests do (SQLite + directory, PostgreSQL + S3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from flask.testing import FlaskClient

from portal.accounts.models import Role
from portal.orgs.models import OrgKind
from tests.api.conftest import api_for  # noqa: F401 - fixtures re-exported for this package
from tests.conftest import csrf_of
from tests.deposits.conftest import (  # noqa: F401 - as above
    client_for,
    deposits_seaweedfs,
    settings,
)
from tests.factories import Account, Cast, Factory, member, org

# The test person: what must never be found in clear outside the rendered page.
NOM, PRENOM, CAF = "Quelquechose-Zèbre", "Zoé", "7654321"


@dataclass
class FicheWorld(Cast):
    """62 and 59: their SLAI, France Travail of 62, two providers of 62, one of 59."""

    cd62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    cd59: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 59", "59")]
    ft62: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT Arras", territory=("62",))]
    provider62: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso Insertion 62", "62")]
    other62: Annotated[str, org(OrgKind.PRESTATAIRE, "Autre Asso 62", "62")]
    provider59: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso 59", "59")]
    adviser: Annotated[Account, member("ft62", Role.AGENT, name="Conseil Ler")]
    slai62: Annotated[Account, member("cd62", Role.AGENT, name="Agnès Slai")]
    slai59: Annotated[Account, member("cd59", Role.AGENT, name="Nina Slai")]
    referent62: Annotated[Account, member("provider62", Role.AGENT, name="Ref Erent")]
    other_referent62: Annotated[Account, member("other62", Role.AGENT, name="Autre Ref")]
    referent59: Annotated[Account, member("provider59", Role.AGENT, name="Ref Nord")]


@pytest.fixture
def fw(factory: Factory) -> FicheWorld:
    return FicheWorld.build(factory)


def bilaterale_values(fw: FicheWorld, **overrides: Any) -> dict[str, Any]:
    """The API's values of a complete bilatérale fiche sent by France Travail to the CD 62."""
    return {
        "date_fiche": "2026-12-01",
        "structure_prescriptrice": "france_travail",
        "prescripteur": fw.adviser.id,
        "slai": fw.cd62,
        "suivi": "referent_mandate",
        "structure_mandatee": fw.provider62,
        "demandeur": {"nom": NOM, "prenom": PRENOM},
        "date_naissance": "1990-04-12",
        "adresse": {"voie": "12 rue des Lilas", "code_postal": "62000", "commune": "Arras"},
        "consentement_numerique": True,
        "email": "zoe.zebre@example.org",
        "identifiant_ft": "1234567A",
        "identifiant_caf": CAF,
        "situation_famille": "seul",
        "enfants_a_charge": 2,
        "brsa": True,
        "rqth": False,
        "freins": ["logement", "transport"],
        "attestation_signee": True,
        **overrides,
    }


def web_data(values: dict[str, Any]) -> dict[str, Any]:
    """The same values as the web form posts them."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            data.update({f"{key}-{part}": text for part, text in value.items()})
        elif isinstance(value, bool):
            data[key] = "oui" if value else "non"
        elif isinstance(value, int):
            data[key] = str(value)
        elif key.startswith("date") and isinstance(value, str):
            data[key] = "/".join(reversed(value.split("-")))  # as people type it
        else:
            data[key] = value
    return data


def post_form(client: FlaskClient, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": csrf_of(client, path), **data})
