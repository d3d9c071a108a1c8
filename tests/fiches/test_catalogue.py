"""The catalogue of fiches: the shipped forms load, malformed files are refused at start-up
with the file and the field named, and the validator applies the data's rules."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal.fiches.catalogue import BUILTIN_DIR, CatalogueError, load_catalogue, parse_form
from portal.fiches.validator import validate

DATA = Path(__file__).parent / "data"
ECO = "Aucune information d'ordre économique et financière ne doit être communiquée."


def shipped(name: str) -> dict[str, Any]:
    return json.loads((BUILTIN_DIR / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_shipped_catalogue_loads_with_every_form_of_the_issue() -> None:
    catalogue = load_catalogue()
    ids = {f.id for f in catalogue.current()}
    assert ids == {
        "liaison-accord-tacite", "liaison-bilaterale", "haut-rhin-fiche-bleue",
        "haut-rhin-fiche-verte", "haut-rhin-fiche-jaune",
    }  # fmt: skip
    for form in catalogue.current():
        notices = [n.text for b in form.blocks for n in b.items if not hasattr(n, "type")]
        assert ECO in notices, form.id
        assert any(f.type == "acknowledgement" for f in form.fields()), form.id
        assert form.person_identity and form.person_birth_date
    bilaterale = catalogue.latest("liaison-bilaterale")
    assert bilaterale is not None and bilaterale.has_decision
    decision = [b for b in bilaterale.blocks if b.filled_by == "recipient"]
    assert [f.id for f in decision[0].fields] == ["entree_accompagnement", "date_decision"]
    prescriber = bilaterale.field("structure_prescriptrice")
    assert prescriber is not None
    assert [c.label for c in prescriber.choices] == ["France Travail", "Département"]
    # The Haut-Rhin forms are offered in the Haut-Rhin only.
    assert {f.id for f in catalogue.offered("68", "france_travail")} >= {"haut-rhin-fiche-bleue"}
    assert "haut-rhin-fiche-bleue" not in {f.id for f in catalogue.offered("62", "france_travail")}
    verte = catalogue.latest("haut-rhin-fiche-verte")
    jaune = catalogue.latest("haut-rhin-fiche-jaune")
    assert verte is not None and verte.field("bilan_parcours") is not None
    assert jaune is not None and jaune.field("ppae") is not None


def _field(data: dict[str, Any], field_id: str) -> dict[str, Any]:
    for block in data["blocks"]:
        for item in block["items"]:
            if item.get("id") == field_id and "type" in item:
                return item  # type: ignore[no-any-return]
    raise AssertionError(field_id)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _field(d, "identifiant_caf").update(type="texte_libre"),
         ["liaison-bilaterale.v1.json", "« identification »", "valeur inconnue \"texte_libre\""]),
        (lambda d: _field(d, "identifiant_caf").pop("label"),
         ["« identifiant_caf »", "propriété obligatoire absente : « label »"]),
        (lambda d: _field(d, "rqth").update(id="brsa"),
         ["liaison-bilaterale.v1.json", "champ « brsa »", "identifiant déjà utilisé"]),
        (lambda d: _field(d, "email").update(enabled_if={"field": "inconnu", "equals": True}),
         ["champ « email » > enabled_if", "champ inconnu « inconnu »"]),
        (lambda d: _field(d, "freins").update(choices=[]),
         ["« freins »", "valeur vide"]),
    ],
)  # fmt: skip
def test_a_malformed_form_is_refused_naming_the_file_and_the_field(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    data = copy.deepcopy(shipped("liaison-bilaterale.v1.json"))
    change(data)
    with pytest.raises(CatalogueError) as refused:
        parse_form(data, "liaison-bilaterale.v1.json")
    for part in expected:
        assert part in str(refused.value), str(refused.value)


def test_the_app_refuses_to_start_on_a_malformed_catalogue(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    data = shipped("liaison-accord-tacite.v1.json")
    data["id"], data["version"] = "local-fiche", 3
    _field(data, "demandeur")["type"] = "commentaire"
    (tmp_path / "local.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(
        CatalogueError, match=r"fichier local\.json : blocs\[5\] « identification »"
    ):
        make_app(fiches_catalogue_dirs=(tmp_path,))
    # The same form twice (id and version) is refused too.
    (tmp_path / "local.json").write_text(
        json.dumps(shipped("liaison-accord-tacite.v1.json")), encoding="utf-8"
    )
    with pytest.raises(CatalogueError, match=r"déjà défini par liaison-accord-tacite\.v1\.json"):
        make_app(fiches_catalogue_dirs=(tmp_path,))


def test_a_form_of_a_data_file_joins_the_catalogue() -> None:
    catalogue = load_catalogue((DATA,))
    form = catalogue.latest("essai-fiche-rose")
    assert form is not None and form.enabled_in("62") and not form.enabled_in("59")
    assert validate(form, {}) == {
        "personne": "Ce champ est obligatoire.",
        "naissance": "Ce champ est obligatoire.",
        "caf": "Ce champ est obligatoire.",
        "couleur": "Ce champ est obligatoire.",
    }


BASE = {
    "date_fiche": "2026-12-01",
    "structure_prescriptrice": "france_travail",
    "prescripteur": "a" * 32,
    "slai": "b" * 32,
    "suivi": "referent_departement",
    "demandeur": {"nom": "Dupont-Lefèvre", "prenom": "Zoé"},
    "date_naissance": "1990-04-12",
    "adresse": {"voie": "12 rue des Lilas", "code_postal": "62000", "commune": "Arras"},
    "consentement_numerique": False,
    "identifiant_ft": "1234567A",
    "identifiant_caf": "7654321",
    "situation_famille": "seul",
    "enfants_a_charge": 0,
    "brsa": True,
    "rqth": False,
    "freins": ["logement", "transport"],
    "attestation_signee": True,
}


def test_the_validator_applies_types_and_conditions() -> None:
    form = load_catalogue().latest("liaison-bilaterale")
    assert form is not None
    today = date(2026, 12, 8)
    assert validate(form, BASE, today=today) == {}
    # The e-mail only when the person consented to digital exchanges.
    assert validate(form, {**BASE, "email": "zoe@example.org"}, today=today) == {
        "email": "Ce champ ne peut être rempli que si la case dont il dépend est cochée."
    }
    consented = {**BASE, "consentement_numerique": True, "email": "zoe@example.org"}
    assert validate(form, consented, today=today) == {}
    # A provider's referent is required when the follow-up is by a mandated provider.
    mandated = {**BASE, "suivi": "referent_mandate"}
    assert validate(form, mandated, today=today) == {
        "structure_mandatee": "Ce champ est obligatoire."
    }
    wrong = {
        **BASE,
        "date_naissance": "1990-02-30",
        "identifiant_caf": "12AB",
        "identifiant_ft": "12",
        "freins": ["autre"],
        "enfants_a_charge": 21,
        "attestation_signee": False,
        "demandeur": {"nom": "Dupont; DROP TABLE", "prenom": "Zoé"},
        "commentaire": "texte libre",
        "entree_accompagnement": "oui",
    }
    errors = validate(form, wrong, today=today)
    assert set(errors) == {
        "date_naissance", "identifiant_caf", "identifiant_ft", "freins", "enfants_a_charge",
        "attestation_signee", "demandeur", "commentaire", "entree_accompagnement",
    }  # fmt: skip
    assert errors["commentaire"] == "Ce champ n'existe pas dans ce formulaire."
    # The decision block is the receiving side's.
    assert validate(form, {}, filled_by="recipient", today=today) == {
        "entree_accompagnement": "Ce champ est obligatoire.",
        "date_decision": "Ce champ est obligatoire.",
    }
    # Organisations and people are narrowed to what the caller allows.
    assert validate(
        form, BASE, today=today, allowed={"prescripteur": {"a" * 32}, "slai": set()}
    ) == {"slai": "Choisissez une des options proposées."}
