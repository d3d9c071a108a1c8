"""The fiches' part of the OpenAPI document, generated from the catalogue: one schema of
values per form version, so that a form added as data is described without code."""

from __future__ import annotations

from typing import Any

from portal.api.models import ApiScope
from portal.fiches.catalogue import Catalogue, Field, Form

Schema = dict[str, Any]
ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def schema_name(form: Form) -> str:
    return "FicheValues_" + form.id.replace("-", "_") + f"_v{form.version}"


def field_schema(f: Field) -> Schema:
    """The JSON Schema of one field's value (the validator's rules, as far as JSON Schema says
    them; `enabled_if` and `required_if` are given in the description)."""
    kind = f.type
    schema: Schema
    if kind == "identity":
        schema = {
            "type": "object",
            "required": ["nom", "prenom"],
            "properties": {"nom": {"type": "string"}, "prenom": {"type": "string"}},
            "additionalProperties": False,
        }
    elif kind == "address":
        schema = {
            "type": "object",
            "required": ["voie", "code_postal", "commune"],
            "properties": {
                "voie": {"type": "string"},
                "code_postal": {"type": "string", "pattern": "^[0-9]{5}$"},
                "commune": {"type": "string"},
            },
            "additionalProperties": False,
        }
    elif kind == "date":
        schema = {"type": "string", "format": "date"}
    elif kind == "email":
        schema = {"type": "string", "format": "email"}
    elif kind == "phone":
        schema = {"type": "string", "description": "Numéro français."}
    elif kind == "france_travail_id":
        schema = {"type": "string", "pattern": "^[0-9]{7}[0-9A-Z]$"}
    elif kind == "caf_id":
        schema = {"type": "string", "pattern": "^[0-9]{7}$"}
    elif kind == "choice":
        schema = {"type": "string", "enum": [c.value for c in f.choices]}
    elif kind == "multiple_choice":
        schema = {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "enum": [c.value for c in f.choices]},
        }
    elif kind == "yes_no":
        schema = {"type": "boolean"}
    elif kind == "acknowledgement":
        schema = {"type": "boolean", "const": True}
    elif kind == "number":
        schema = {"type": "integer", "minimum": f.min or 0, "maximum": f.max or 999}
    else:  # organisation, person, attachment
        schema = dict(ID)
    notes = [f.label]
    if f.enabled_if is not None:
        notes.append(f"Seulement si « {f.enabled_if.field} » vaut {f.enabled_if.equals!r}.")
    if f.required_if is not None:
        notes.append(f"Obligatoire si « {f.required_if.field} » vaut {f.required_if.equals!r}.")
    if kind == "organisation":
        notes.append("Organisation de l'espace, de type " + ", ".join(f.org_kinds) + ".")
    if kind == "person":
        notes.append(
            "Compte de l'organisation du champ « " + f.organisation_field + " »."
            if f.organisation_field
            else "Compte de votre organisation."
        )
    if kind == "attachment":
        notes.append("Pas encore accepté par l'API.")
    return {**schema, "description": " ".join(notes)}


def values_schema(form: Form) -> Schema:
    fields = list(form.fields("sender"))
    return {
        "type": "object",
        "title": form.title,
        "description": (
            f"Valeurs du formulaire « {form.id} » version {form.version} ({form.key}). "
            "Aucun champ de texte libre ; un champ inconnu est refusé."
        ),
        "additionalProperties": False,
        "required": [f.id for f in fields if f.required or f.type == "acknowledgement"],
        "properties": {f.id: field_schema(f) for f in fields},
    }


def fiche_schemas(catalogue: Catalogue) -> dict[str, Schema]:
    forms = sorted(catalogue.forms.values(), key=lambda f: (f.id, f.version))
    schemas: dict[str, Schema] = {schema_name(f): values_schema(f) for f in forms}
    schemas["NewFiche"] = {
        "oneOf": [
            {
                "type": "object",
                "required": ["form", "departement", "recipient", "values"],
                "properties": {
                    "form": {"type": "string", "enum": [f.key, f.id]},
                    "departement": {"type": "string"},
                    "recipient": {**ID, "description": "Organisation destinataire."},
                    "values": _ref(schema_name(f)),
                },
            }
            for f in forms
        ],
        "description": "Une fiche à envoyer : le formulaire (id ou id@version), l'espace, le "
        "destinataire et les valeurs.",
    }
    summary = {
        "id": ID,
        "form": {"type": "string"},
        "form_name": {"type": "string"},
        "departement": {"type": "string"},
        "state": {
            "type": "string",
            "enum": ["draft", "sent", "received", "accepted", "refused", "withdrawn", "destroyed"],
        },
        "state_label": {"type": "string"},
        "overdue": {"type": "boolean"},
        "person": {"type": "string"},
        "birth_date": {"type": "string"},
        "sender_organisation": {"type": "string"},
        "recipient_organisation": {"type": "string"},
        "forwarded_to": NULLABLE_STRING,
        "created_at": {"type": "string", "format": "date-time"},
        "sent_at": NULLABLE_STRING,
        "due_at": NULLABLE_STRING,
        "expires_at": {"type": "string", "format": "date-time"},
        "url": {"type": "string"},
    }
    schemas["FicheSummary"] = {"type": "object", "required": list(summary), "properties": summary}
    schemas["FicheList"] = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("FicheSummary")}},
    }
    detail = {
        **summary,
        "decision": {"type": ["string", "null"], "enum": ["oui", "non", None]},
        "decided_on": NULLABLE_STRING,
        "replaces": {"type": ["string", "null"]},
        "replaced_by": {"type": ["string", "null"]},
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["at", "step"],
                "properties": {"at": {"type": "string"}, "step": {"type": "string"}},
            },
        },
        "values": {"type": "object", "description": "Les valeurs, selon le schéma du formulaire."},
    }
    schemas["Fiche"] = {
        "type": "object",
        "required": [*summary, "decision", "history"],
        "properties": detail,
    }
    return schemas


def fiche_paths(operation: Any, json: Any, error: Any, param: Any) -> dict[str, Any]:
    """The four routes, built with the document's own helpers."""
    fiche_id = param("fiche_id", "path", "Identifiant de la fiche.", ID)
    return {
        "/fiches": {
            "get": operation(
                "listFiches",
                "Les fiches de liaison reçues, envoyées, en brouillon ou sans réponse.",
                ApiScope.READ,
                {"200": json(_ref("FicheList"), "Les 50 plus récentes."), "422": error("Invalid")},
                parameters=[
                    param(
                        "box",
                        "query",
                        "received, sent, drafts ou overdue (sans réponse après 21 jours).",
                        {
                            "type": "string",
                            "enum": ["received", "sent", "drafts", "overdue"],
                            "default": "received",
                        },
                    )
                ],
            ),
            "post": operation(
                "createFiche",
                "Envoyer une fiche de liaison (mêmes données et mêmes contrôles que le "
                "formulaire du portail).",
                ApiScope.DEPOSIT,
                {
                    "201": json(_ref("Fiche"), "La fiche, envoyée ; son destinataire est prévenu."),
                    "400": error("BadRequest"),
                    "422": error("Invalid"),
                },
                body={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewFiche")}},
                },
                description=(
                    "Les valeurs suivent le schéma du formulaire choisi (FicheValues_…). Une "
                    "erreur répond 422 avec `errors` : un élément par champ (`field`, `detail`)."
                ),
            ),
        },
        "/fiches/{fiche_id}": {
            "get": operation(
                "getFiche",
                "Une fiche, avec ses valeurs (consultation tracée).",
                ApiScope.READ,
                {"200": json(_ref("Fiche"), "La fiche."), "404": error("NotFound")},
                parameters=[fiche_id],
            )
        },
        "/fiches/{fiche_id}/pdf": {
            "get": operation(
                "getFichePdf",
                "La fiche en PDF (PDF/UA-1 balisé), telle que le portail l'imprime "
                "(téléchargement tracé).",
                ApiScope.READ,
                {
                    "200": {
                        "description": (
                            "Les blocs du modèle papier, les mentions, les contacts de protection "
                            "des données du département, la référence et l'empreinte de contrôle."
                        ),
                        "content": {"application/pdf": {"schema": {}}},
                    },
                    "404": error("NotFound"),
                },
                parameters=[fiche_id],
            )
        },
    }
