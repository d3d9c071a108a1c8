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
        notes.append(
            "Identifiant de la pièce jointe : envoyez le PDF par "
            "PUT /fiches/{fiche_id}/attachments/" + f.id + " sur un brouillon."
        )
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
                    "draft": {
                        "type": "boolean",
                        "default": False,
                        "description": "true : garder un brouillon (valeurs manquantes "
                        "admises) pour y joindre les PDF, puis l'envoyer par POST "
                        "/fiches/{fiche_id}/send.",
                    },
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
        "attachments": {"type": "array", "items": _ref("FicheAttachment")},
    }
    attachment = {
        "field": {"type": "string", "description": "Le champ de type pièce jointe."},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "url": {"type": "string"},
    }
    schemas["FicheAttachment"] = {
        "type": "object",
        "required": list(attachment),
        "properties": attachment,
    }
    schemas["FicheDecision"] = {
        "type": "object",
        "required": ["decision", "decided_on"],
        "properties": {
            "decision": {
                "type": "string",
                "enum": ["oui", "non"],
                "description": "Entrée en accompagnement global : OUI / NON.",
            },
            "decided_on": {"type": "string", "format": "date"},
        },
    }
    schemas["FicheDraftUpdate"] = {
        "type": "object",
        "required": ["values"],
        "properties": {
            "values": {
                "type": "object",
                "description": "Les valeurs, selon le schéma du formulaire du brouillon.",
            },
            "recipient": {**ID, "description": "Organisation destinataire (inchangée sinon)."},
        },
    }
    schemas["FicheForward"] = {
        "type": "object",
        "required": ["provider"],
        "properties": {
            "provider": {**ID, "description": "Prestataire mandaté par le département."}
        },
    }
    schemas["Fiche"] = {
        "type": "object",
        "required": [*summary, "decision", "history", "attachments"],
        "properties": detail,
    }
    return schemas


def fiche_paths(operation: Any, json: Any, error: Any, param: Any) -> dict[str, Any]:
    """The routes of the fiches, built with the document's own helpers."""
    fiche_id = param("fiche_id", "path", "Identifiant de la fiche.", ID)
    field_id = param(
        "field_id", "path", "Champ de type pièce jointe du formulaire.", {"type": "string"}
    )
    fiche_ok = json(_ref("Fiche"), "La fiche.")

    def json_body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}

    pdf: dict[str, Any] = {"content": {"application/pdf": {"schema": {}}}}
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
            ),
            "put": operation(
                "updateFicheDraft",
                "Remplacer les valeurs d'un brouillon (valeurs manquantes admises jusqu'à "
                "l'envoi ; les pièces jointes restent si elles ne sont pas nommées).",
                ApiScope.DEPOSIT,
                {
                    "200": fiche_ok,
                    "400": error("BadRequest"),
                    "404": error("NotFound"),
                    "422": error("Invalid"),
                },
                parameters=[fiche_id],
                body=json_body("FicheDraftUpdate"),
            ),
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
        "/fiches/{fiche_id}/send": {
            "post": operation(
                "sendFiche",
                "Envoyer un brouillon (créé avec `draft: true`) : mêmes contrôles qu'une fiche "
                "nouvelle, `errors` par champ.",
                ApiScope.DEPOSIT,
                {"200": fiche_ok, "404": error("NotFound"), "422": error("Invalid")},
                parameters=[fiche_id],
            )
        },
        "/fiches/{fiche_id}/decision": {
            "post": operation(
                "decideFiche",
                "Enregistrer la décision sur une fiche bilatérale reçue (entrée en "
                "accompagnement global OUI / NON et sa date) ; la structure prescriptrice est "
                "prévenue.",
                ApiScope.DEPOSIT,
                {
                    "200": fiche_ok,
                    "400": error("BadRequest"),
                    "404": error("NotFound"),
                    "422": error("Invalid"),
                },
                parameters=[fiche_id],
                body=json_body("FicheDecision"),
            )
        },
        "/fiches/{fiche_id}/forward": {
            "post": operation(
                "forwardFiche",
                "Transmettre une fiche reçue au référent d'un prestataire mandaté par le "
                "département (une fois).",
                ApiScope.DEPOSIT,
                {
                    "200": fiche_ok,
                    "400": error("BadRequest"),
                    "404": error("NotFound"),
                    "422": error("Invalid"),
                },
                parameters=[fiche_id],
                body=json_body("FicheForward"),
            )
        },
        "/fiches/{fiche_id}/attachments/{field_id}": {
            "put": operation(
                "attachToFiche",
                "Joindre un PDF à un champ pièce jointe d'un brouillon (remplace le précédent).",
                ApiScope.DEPOSIT,
                {
                    "201": {
                        **json(_ref("FicheAttachment"), "Pièce jointe vérifiée et chiffrée."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": error("NotFound"),
                    "413": error("TooLarge"),
                    "422": error("Invalid"),
                    "503": error("Unavailable"),
                },
                parameters=[fiche_id, field_id],
                body={
                    "required": True,
                    "description": "Le PDF (10 Mo au plus), corps brut de la requête.",
                    "content": {"application/pdf": {}, "application/octet-stream": {}},
                },
                description=(
                    "Refusé (422) : un fichier qui n'est pas un PDF ou un contenu actif "
                    "(code file_refused), une signature de l'antivirus (file_infected), un "
                    "champ qui n'est pas une pièce jointe ou une fiche déjà envoyée (invalid) ; "
                    "413 file_too_large au-delà de 10 Mo ; 503 antivirus_unavailable quand "
                    "l'antivirus ne répond pas (rien n'est enregistré sans analyse)."
                ),
            ),
            "get": operation(
                "getFicheAttachment",
                "Le PDF joint à ce champ de la fiche (consultation tracée).",
                ApiScope.READ,
                {
                    "200": {
                        "description": "Le PDF, déchiffré.",
                        **pdf,
                    },
                    "404": error("NotFound"),
                },
                parameters=[fiche_id, field_id],
            ),
        },
    }
