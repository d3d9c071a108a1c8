"""The OpenAPI 3.1 document of `/api/v1`, written by hand and kept true by a test.

The lists that grow with the product (categories, scopes) are read from their enums, so that a
new flow type appears here the day it becomes a category.
"""

from __future__ import annotations

from typing import Any

from portal.api.models import SCOPE_LABELS, ApiScope
from portal.deposits.models import (
    CATEGORY_LABELS,
    DATED_TITLE_CATEGORIES,
    REASON_LABELS,
    Category,
    Reason,
)
from portal.fiches.catalogue import Catalogue

Schema = dict[str, Any]

NULLABLE_STRING: Schema = {"type": ["string", "null"]}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
ID: Schema = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
DEPOSIT_STATUSES = [
    "draft",
    "scan_pending",
    "available",
    "expired",
    "withdrawn",
    "destroyed",
]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


SCHEMAS: dict[str, Schema] = {
    "Problem": {
        **_object(
            {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string", "description": "En français."},
                "status": {"type": "integer"},
                "detail": {"type": "string", "description": "En français."},
                "code": {
                    "type": "string",
                    "description": (
                        "Clé stable, à utiliser par les scripts : unauthorized, not_found, "
                        "insufficient_scope, invalid, invalid_json, file_refused, file_infected, "
                        "file_too_large, link_refused, storage_unavailable, antivirus_unavailable…"
                    ),
                },
                "request_id": NULLABLE_STRING,
            },
            {"errors": {"type": "array", "items": _ref("ValidationError")}},
        ),
        "description": "RFC 9457 problem details.",
    },
    "ValidationError": _object(
        {"detail": {"type": "string"}},
        {
            "pointer": {"type": "string", "description": "JSON Pointer dans le corps."},
            "parameter": {"type": "string", "description": "Paramètre ou en-tête."},
            "field": {"type": "string", "description": "Champ d'une fiche (son identifiant)."},
        },
    ),
    "Organisation": _object(
        {
            "id": ID,
            "name": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": ["departement", "france_travail", "prestataire", "plateforme"],
            },
            "kind_label": {"type": "string"},
        }
    ),
    "OrganisationList": _object(
        {
            "departement": {"type": "string"},
            "items": {"type": "array", "items": _ref("Organisation")},
        }
    ),
    "Person": _object({"id": ID, "name": {"type": "string"}, "organisation": _ref("Organisation")}),
    "Me": _object(
        {
            "id": ID,
            "name": {"type": "string"},
            "email": {"type": "string"},
            "organisation": _ref("Organisation"),
            "roles": {"type": "array", "items": {"type": "string"}},
            "spaces": {
                "type": "array",
                "items": _object({"code": {"type": "string"}, "name": {"type": "string"}}),
            },
            "categories": {
                "type": "array",
                "description": "Les catégories (types de flux) que ce compte peut traiter.",
                "items": _object({"code": _ref("Category"), "label": {"type": "string"}}),
            },
            "token": _object(
                {
                    "id": ID,
                    "name": {"type": "string"},
                    "scopes": {"type": "array", "items": _ref("Scope")},
                    "expires_at": DATE_TIME,
                }
            ),
        }
    ),
    "Category": {
        "type": "string",
        "enum": [str(c) for c in Category],
        "description": "; ".join(f"{c} : {CATEGORY_LABELS[c]}" for c in Category),
    },
    "Reason": {
        "type": "string",
        "enum": [str(r) for r in Reason],
        "description": "Motif de l'envoi (liste fermée : pas de message libre). "
        + "; ".join(f"{r} : {REASON_LABELS[r]}" for r in Reason),
    },
    "Scope": {
        "type": "string",
        "enum": [str(s) for s in ApiScope],
        "description": "; ".join(f"{s} : {SCOPE_LABELS[s]}" for s in ApiScope),
    },
    "DepositSummary": _object(
        {
            "id": ID,
            "departement": {"type": "string"},
            "category": _ref("Category"),
            "category_label": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": DEPOSIT_STATUSES},
            "status_label": {"type": "string"},
            "sender": {"oneOf": [_ref("Person"), {"type": "null"}]},
            "created_at": DATE_TIME,
            "published_at": NULLABLE_DATE_TIME,
            "expires_at": DATE_TIME,
            "max_downloads": {"type": ["integer", "null"]},
            "file_count": {"type": "integer"},
            "url": {"type": "string", "format": "uri-reference"},
        }
    ),
    "Deposit": {
        "allOf": [
            _ref("DepositSummary"),
            _object(
                {
                    "reason": {"oneOf": [_ref("Reason"), {"type": "null"}]},
                    "reason_label": NULLABLE_STRING,
                    "recipients": {"type": "array", "items": _ref("Recipient")},
                    "files": {"type": "array", "items": _ref("DepositFile")},
                    "receipts": {
                        "type": ["array", "null"],
                        "items": _ref("Receipt"),
                        "description": "Accusés de réception ; null hors du côté expéditeur.",
                    },
                    "content_removal_pending": {
                        "type": "boolean",
                        "description": (
                            "Dépôt détruit (clés effacées : illisible) dont le contenu chiffré "
                            "n'a pas encore pu être supprimé du stockage, indisponible ; la "
                            "purge le supprime à son retour."
                        ),
                    },
                }
            ),
        ]
    },
    "Recipient": _object(
        {
            "organisation": {"oneOf": [_ref("Organisation"), {"type": "null"}]},
            "user_id": NULLABLE_STRING,
        }
    ),
    "DepositFile": _object(
        {
            "id": ID,
            "name": {"type": "string"},
            "content_type": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "created_at": DATE_TIME,
            "destroyed": {"type": "boolean"},
            "content_url": {"type": "string", "format": "uri-reference"},
        }
    ),
    "Receipt": _object({"file_id": ID, "user": _ref("Person"), "downloaded_at": DATE_TIME}),
    "DepositPage": _object(
        {
            "items": {"type": "array", "items": _ref("DepositSummary")},
            "next": {
                **NULLABLE_STRING,
                "description": "Curseur de la page suivante (paramètre after) ; null à la fin.",
            },
            "next_url": NULLABLE_STRING,
        }
    ),
    "NewDeposit": {
        **_object(
            {
                "departement": {"type": "string", "examples": ["62"]},
                "category": _ref("Category"),
                "recipients": {
                    "type": "array",
                    "items": ID,
                    "minItems": 1,
                    "description": "Identifiants d'organisations (GET /organisations).",
                },
            },
            {
                "title": {
                    "type": "string",
                    "maxLength": 200,
                    "description": (
                        "Obligatoire pour un document, sans donnée personnelle (il apparaît "
                        "dans les listes, non chiffré). Interdit pour "
                        + ", ".join(sorted(str(c) for c in DATED_TITLE_CATEGORIES))
                        + " : le portail leur donne un titre daté."
                    ),
                },
                "reason": _ref("Reason"),
                "message": {
                    "type": ["string", "null"],
                    "maxLength": 0,
                    "deprecated": True,
                    "description": (
                        "Supprimé : plus de message libre. Une valeur non vide est refusée "
                        "(422, pointeur #/message) ; utilisez « reason »."
                    ),
                },
                "lifetime_days": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 90,
                    "description": (
                        "Par défaut la durée maximale de la catégorie : 90 jours ; "
                        "hebdo_experimentation : FILR_WEEKLY_FILE_LIFETIME_DAYS (7 par défaut), "
                        "qui en est aussi le maximum."
                    ),
                },
                "max_downloads": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
            },
        ),
        "additionalProperties": False,
    },
}

_FLOW_ISSUE: Schema = _object(
    {
        "detail": {"type": "string", "description": "Message en français."},
        "severity": {"type": "string", "enum": ["error", "warning"]},
        "rule": {"type": "string", "description": "Code de règle stable (docs/flows.md)."},
        "line": {"type": ["integer", "null"]},
        "record": {"type": ["integer", "null"], "description": "Numéro du dossier (1 = premier)."},
        "field": NULLABLE_STRING,
        "value": {**NULLABLE_STRING, "description": "Valeur trouvée, NIR masqué."},
    }
)
SCHEMAS["FlowIssue"] = _FLOW_ISSUE
SCHEMAS["Flow"] = _object(
    {
        "id": ID,
        "departement": {"type": "string"},
        "flow_type": {"type": ["string", "null"], "enum": ["CGPEM", "PECGM", "PECDH", None]},
        "status": {"type": "string", "enum": ["valid", "rejected"]},
        "period_start": {
            "type": "string",
            "format": "date",
            "description": "Premier jour du mois, ou lundi de la semaine (PECDH).",
        },
        "date_reference": {"type": ["string", "null"], "format": "date"},
        "version": NULLABLE_STRING,
        "record_count": {"type": "integer"},
        "nature_counts": {
            "type": "object",
            "description": "CGPEM : dossiers par nature d'orientation (01 à 06).",
        },
        "error_count": {"type": "integer"},
        "warning_count": {"type": "integer"},
        "sanity": {
            "type": "array",
            "description": "Écarts avec la période précédente du même flux (nombres seulement).",
            "items": _object(
                {
                    "kind": {"type": "string", "enum": ["record_count", "nature_share"]},
                    "direction": {
                        "type": "string",
                        "enum": ["drop", "jump", "appeared", "disappeared"],
                    },
                    "subject": {"type": "string"},
                    "previous": {"type": "number"},
                    "current": {"type": "number"},
                    "change": {"type": ["number", "null"]},
                    "message": {"type": "string"},
                }
            ),
        },
        "unusable": {
            "oneOf": [
                _object({"at": DATE_TIME, "reason": {"type": "string"}}),
                {"type": "null"},
            ],
            "description": "Signalement « inexploitable » de l'organisation destinataire.",
        },
        "created_at": DATE_TIME,
        "expires_at": NULLABLE_DATE_TIME,
        "deposit_url": {
            "type": ["string", "null"],
            "description": "Le dépôt transmis (fichier téléchargeable) ; null si refusé.",
        },
        "issues": {
            "type": ["array", "null"],
            "items": _ref("FlowIssue"),
            "description": (
                "Le rapport de vérification (anomalies d'un fichier refusé, avertissements d'un "
                "fichier valide) ; null après 90 jours."
            ),
        },
        "readings": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "string"},
            "description": (
                "Lecture suivie des tables contradictoires de la convention, par champ "
                "(`fin/date-reference`, `entete/periodicite`) ; null après 90 jours."
            ),
        },
        "url": {"type": "string", "format": "uri-reference"},
    }
)
SCHEMAS["FlowProblem"] = {
    "allOf": [
        _ref("Problem"),
        _object(
            {
                "errors": {"type": "array", "items": _ref("FlowIssue")},
                "omitted_issue_count": {"type": "integer"},
                "flow": _ref("Flow"),
            }
        ),
    ],
    "description": "Fichier refusé (code flow_invalid) : toutes ses anomalies dans errors.",
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _problem("Corps illisible (JSON attendu)."),
    "Unauthorized": _problem("Jeton absent, inconnu, révoqué ou expiré, ou compte inactif."),
    "Forbidden": _problem("Le jeton n'a pas la portée nécessaire (code insufficient_scope)."),
    "NotFound": _problem("Inconnu, ou hors de vos droits : les deux cas sont indiscernables."),
    "Gone": _problem("Fichier plus disponible : dépôt expiré ou retiré, maximum atteint."),
    "TooLarge": _problem("Fichier trop volumineux."),
    "Invalid": _problem("Requête invalide ; le détail est en français, `errors` par champ."),
    "Unavailable": _problem("Stockage momentanément indisponible."),
    "Corrupted": _problem(
        "Fichier endommagé dans le stockage (code file_corrupted) : contrôle d'intégrité en "
        "échec, l'équipe sécurité est alertée. Si l'échec survient en cours de transfert, la "
        "connexion est coupée avant Content-Length octets."
    ),
}


def _param(name: str, where: str, description: str, schema: Schema | None = None,
           *, required: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


DEPOSIT_ID = _param("deposit_id", "path", "Identifiant du dépôt.", ID)
FILE_ID = _param("file_id", "path", "Identifiant du fichier.", ID)
UPLOAD_ID = _param("upload_id", "path", "Identifiant de l'envoi reprenable.", ID)
TUS_RULES = (
    "Désactivé sauf si RESUMABLE_UPLOADS est activé. `OPTIONS /api/v1/uploads` annonce la "
    "version, les extensions (creation, termination, expiration) et les règles des morceaux : "
    "chacun sauf le dernier compte un multiple de `Filr-Chunk-Granularity` octets, entre "
    "`Filr-Min-Chunk-Size` et `Filr-Max-Chunk-Size`. `HEAD /api/v1/uploads/{upload_id}` "
    "donne `Upload-Offset` pour reprendre après une coupure ; un envoi inachevé expire "
    "(`Upload-Expires`, 24 h)."
)


def _operation(
    operation_id: str,
    summary: str,
    scope: ApiScope | None,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    errors: dict[str, Any] = {"401": {"$ref": "#/components/responses/Unauthorized"}}
    if scope is not None:
        errors["403"] = {"$ref": "#/components/responses/Forbidden"}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        # For a non-OAuth scheme, OpenAPI 3.1 lets the array name the roles required.
        "security": [{"bearerToken": [str(scope)] if scope else []}],
        "responses": {**responses, **errors},
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    return operation


def _error(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _paths() -> dict[str, Any]:
    deposit_ok = _json(_ref("Deposit"), "Le dépôt.")
    return {
        "/me": {
            "get": _operation(
                "getMe",
                "Le titulaire du jeton, ses espaces, ses catégories et le jeton lui-même.",
                None,
                {"200": _json(_ref("Me"), "Le titulaire du jeton.")},
            )
        },
        "/organisations": {
            "get": _operation(
                "listRecipientOrganisations",
                "Les organisations que vous pouvez désigner comme destinataires dans un espace.",
                None,
                {
                    "200": _json(_ref("OrganisationList"), "Destinataires possibles."),
                    "404": _error("NotFound"),
                    "422": _error("Invalid"),
                },
                parameters=[
                    _param("departement", "query", "Code du département (espace).", required=True)
                ],
            )
        },
        "/deposits": {
            "get": _operation(
                "listDeposits",
                "Les dépôts que vous pouvez voir, filtrés, par pages (curseur).",
                ApiScope.READ,
                {
                    "200": _json(_ref("DepositPage"), "Une page de dépôts."),
                    "404": _error("NotFound"),
                    "422": _error("Invalid"),
                },
                parameters=[
                    _param(
                        "box",
                        "query",
                        "received : reçus ; sent : envoyés (par vous ou votre organisation).",
                        {"type": "string", "enum": ["all", "received", "sent"], "default": "all"},
                    ),
                    _param("departement", "query", "Un seul espace (404 s'il vous est fermé)."),
                    _param("category", "query", "Une seule catégorie.", _ref("Category")),
                    _param(
                        "status",
                        "query",
                        "État du dépôt.",
                        {"type": "string", "enum": ["available", "expired", "withdrawn", "draft"]},
                    ),
                    _param("sender_org", "query", "Organisation expéditrice.", ID),
                    _param("q", "query", "Recherche dans le titre et le nom de l'expéditeur."),
                    _param(
                        "since",
                        "query",
                        "Déposés ce jour ou après.",
                        {"type": "string", "format": "date"},
                    ),
                    _param(
                        "until",
                        "query",
                        "Déposés ce jour ou avant.",
                        {"type": "string", "format": "date"},
                    ),
                    _param(
                        "sort",
                        "query",
                        "Ordre.",
                        {
                            "type": "string",
                            "enum": ["recent", "oldest", "title"],
                            "default": "recent",
                        },
                    ),
                    _param("after", "query", "Curseur `next` de la page précédente."),
                    _param(
                        "limit",
                        "query",
                        "Taille de la page.",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                    ),
                ],
            ),
            "post": _operation(
                "createDeposit",
                "Créer un dépôt (brouillon) ; ajoutez ensuite ses fichiers, puis envoyez-le.",
                ApiScope.DEPOSIT,
                {
                    "201": {
                        **_json(_ref("Deposit"), "Le brouillon créé."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": _error("BadRequest"),
                    "422": _error("Invalid"),
                },
                body={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewDeposit")}},
                },
            ),
        },
        "/deposits/{deposit_id}": {
            "get": _operation(
                "getDeposit",
                "Un dépôt : ses fichiers et, côté expéditeur, les accusés de réception.",
                ApiScope.READ,
                {"200": deposit_ok, "404": _error("NotFound")},
                parameters=[DEPOSIT_ID],
            )
        },
        "/deposits/{deposit_id}/files": {
            "post": _operation(
                "uploadFile",
                "Ajouter un fichier à un brouillon : le corps brut de la requête, en flux.",
                ApiScope.DEPOSIT,
                {
                    "201": {
                        **_json(_ref("DepositFile"), "Le fichier reçu et chiffré."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": _error("NotFound"),
                    "413": _error("TooLarge"),
                    "422": _error("Invalid"),
                    "503": _error("Unavailable"),
                },
                parameters=[
                    DEPOSIT_ID,
                    _param(
                        "X-Filename",
                        "header",
                        "Nom du fichier, encodé en pourcentage (UTF-8). Il n'est jamais mis "
                        "dans l'URL, qui finit dans les journaux des serveurs mandataires.",
                        required=True,
                    ),
                ],
                body={
                    "required": True,
                    "description": "Le contenu du fichier ; son type est vérifié sur le contenu.",
                    "content": {"application/octet-stream": {}},
                },
            )
        },
        "/deposits/{deposit_id}/uploads": {
            "post": _operation(
                "createResumableUpload",
                "Envoi reprenable (tus 1.0.0, extension creation) : annonce un fichier de "
                "`Upload-Length` octets ; `Location` donne l'adresse de l'envoi.",
                ApiScope.DEPOSIT,
                {
                    "201": {"description": "Envoi créé (en-têtes Location, Upload-Expires)."},
                    "400": _error("Invalid"),
                    "404": _error("NotFound"),
                    "412": _error("Invalid"),
                    "413": _error("TooLarge"),
                    "422": _error("Invalid"),
                    "503": _error("Unavailable"),
                },
                parameters=[
                    DEPOSIT_ID,
                    _param("Tus-Resumable", "header", "1.0.0", required=True),
                    _param("Upload-Length", "header", "Taille du fichier.", required=True),
                    _param(
                        "Upload-Metadata",
                        "header",
                        "`filename` suivi du nom en base64 (UTF-8).",
                        required=True,
                    ),
                ],
                description=TUS_RULES,
            )
        },
        "/uploads": {
            "options": _operation(
                "resumableUploadOptions",
                "Ce que le serveur prend en charge (tus 1.0.0) et les règles des morceaux.",
                None,
                {"204": {"description": "En-têtes Tus-Version, Tus-Extension, Tus-Max-Size."}},
                description=TUS_RULES,
            )
        },
        "/uploads/{upload_id}": {
            "head": _operation(
                "headResumableUpload",
                "Où en est l'envoi : Upload-Offset, Upload-Length, Upload-Expires (jamais en "
                "cache).",
                ApiScope.DEPOSIT,
                {
                    "200": {"description": "L'état de l'envoi, en en-têtes."},
                    "404": _error("NotFound"),
                    "412": _error("Invalid"),
                },
                parameters=[UPLOAD_ID, _param("Tus-Resumable", "header", "1.0.0", required=True)],
            ),
            "patch": _operation(
                "patchResumableUpload",
                "Un morceau à `Upload-Offset` ; enregistré en entier ou pas du tout. Après le "
                "dernier, le fichier est vérifié (type, antivirus) et rejoint le dépôt "
                "(en-têtes Filr-File-Id, Filr-File-Sha256).",
                ApiScope.DEPOSIT,
                {
                    "204": {"description": "Morceau enregistré (en-tête Upload-Offset)."},
                    "400": _error("Invalid"),
                    "404": _error("NotFound"),
                    "409": _error("Invalid"),
                    "412": _error("Invalid"),
                    "413": _error("TooLarge"),
                    "415": _error("Invalid"),
                    "422": _error("Invalid"),
                    "503": _error("Unavailable"),
                },
                parameters=[
                    UPLOAD_ID,
                    _param("Tus-Resumable", "header", "1.0.0", required=True),
                    _param("Upload-Offset", "header", "Où commence ce morceau.", required=True),
                ],
                body={
                    "required": True,
                    "description": "Les octets du morceau.",
                    "content": {"application/offset+octet-stream": {}},
                },
                description=TUS_RULES,
            ),
            "delete": _operation(
                "deleteResumableUpload",
                "Abandonner un envoi inachevé (extension termination) : rien n'en reste.",
                ApiScope.DEPOSIT,
                {"204": {"description": "Envoi abandonné."}, "404": _error("NotFound")},
                parameters=[UPLOAD_ID, _param("Tus-Resumable", "header", "1.0.0", required=True)],
            ),
        },
        "/deposits/{deposit_id}/publish": {
            "post": _operation(
                "publishDeposit",
                "Envoyer le brouillon : les destinataires le voient et sont prévenus par e-mail.",
                ApiScope.DEPOSIT,
                {"200": deposit_ok, "404": _error("NotFound"), "422": _error("Invalid")},
                parameters=[DEPOSIT_ID],
            )
        },
        "/deposits/{deposit_id}/withdraw": {
            "post": _operation(
                "withdrawDeposit",
                "Retirer le dépôt avant son expiration : son contenu est détruit aussitôt. "
                "Déjà retiré ou détruit : 422, code already_withdrawn ou already_destroyed.",
                ApiScope.DEPOSIT,
                {"200": deposit_ok, "404": _error("NotFound"), "422": _error("Invalid")},
                parameters=[DEPOSIT_ID],
            )
        },
        "/deposits/{deposit_id}/files/{file_id}/content": {
            "get": _operation(
                "downloadFile",
                "Télécharger un fichier déchiffré (accusé de réception enregistré).",
                ApiScope.READ,
                {
                    "200": {
                        "description": "Le fichier, en pièce jointe.",
                        "headers": {
                            "Content-Disposition": {"schema": {"type": "string"}},
                            "Content-Length": {"schema": {"type": "integer"}},
                        },
                        # The type detected on the content at upload (DepositFile.content_type).
                        "content": {"*/*": {"schema": {}}},
                    },
                    "404": _error("NotFound"),
                    "410": _error("Gone"),
                    # The stored file failed its integrity check (code `file_corrupted`).
                    "502": _error("Corrupted"),
                },
                parameters=[DEPOSIT_ID, FILE_ID],
            )
        },
        "/flows": {
            "post": _operation(
                "depositFlow",
                "Déposer un flux XML : vérifié en entier avant d'être transmis à l'autre partie.",
                ApiScope.DEPOSIT,
                {
                    "201": {
                        **_json(_ref("Flow"), "Fichier valide : accusé de dépôt, flux transmis."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": _error("NotFound"),
                    "413": _error("TooLarge"),
                    "422": {
                        "description": (
                            "Fichier refusé (code flow_invalid, anomalies dans errors) ou "
                            "requête invalide (code invalid)."
                        ),
                        "content": {"application/problem+json": {"schema": _ref("FlowProblem")}},
                    },
                    # Read back for validation, the stored file failed its integrity check.
                    "502": _error("Corrupted"),
                    "503": _error("Unavailable"),
                },
                parameters=[
                    _param("departement", "query", "Code du département (espace).", required=True),
                    _param(
                        "type",
                        "query",
                        "Flux attendu ; sans lui, lu dans entete/fichier.",
                        {"type": "string", "enum": ["CGPEM", "PECGM", "PECDH"]},
                    ),
                    _param(
                        "X-Filename",
                        "header",
                        "Nom du fichier, encodé en pourcentage (UTF-8).",
                        required=True,
                    ),
                ],
                body={
                    "required": True,
                    "description": "Le fichier XML (ISO-8859-1), corps brut de la requête.",
                    "content": {"application/octet-stream": {}},
                },
            )
        },
        "/flows/{flow_id}": {
            "get": _operation(
                "getFlow",
                "Un flux : résultat de la vérification, période, nombres, écarts.",
                ApiScope.READ,
                {"200": _json(_ref("Flow"), "Le flux."), "404": _error("NotFound")},
                parameters=[_param("flow_id", "path", "Identifiant du flux.", ID)],
            )
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "Ce document.",
                None,
                {"200": _json({"type": "object"}, "Le document OpenAPI 3.1 de l'API.")},
            )
        },
    }


def openapi_document(base_url: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API served under *base_url*; the fiches' forms come
    from *catalogue* (the one of the running app)."""
    from portal.api.fiche_openapi import fiche_paths, fiche_schemas

    catalogue = catalogue or Catalogue()
    paths = {**_paths(), **fiche_paths(_operation, _json, _error, _param)}
    schemas = {**SCHEMAS, **fiche_schemas(catalogue)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "API Fil'R",
            "version": "1",
            "description": (
                "Échanges sécurisés RSA / France Travail, pour les scripts. Authentification "
                "par jeton personnel (Mon compte → Jetons d'accès à l'API) dans l'en-tête "
                "`Authorization: Bearer filr_…`. Erreurs au format RFC 9457 "
                "(application/problem+json). Un dépôt inconnu et un dépôt hors de vos droits "
                "reçoivent la même réponse 404."
            ),
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{"bearerToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Jeton personnel filr_…, à portées read et/ou deposit.",
                }
            },
            "schemas": schemas,
            "responses": RESPONSES,
        },
    }
