"""REST API of the fiches de liaison: send a fiche as JSON (or keep it as a draft, attach its
PDFs, then send it), list them, read one, record the decision, forward it, read its attachments.

Registered on the API blueprint of `portal.api.views`: same bearer tokens, scopes, rate limit
and problem documents. `POST /fiches` takes the values the web form produces, checked by the
same validator against the same catalogue; a refusal answers 422 with `errors` per field.
Reading a fiche is audited, as on the web.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

import storage
from portal.api.models import ApiScope
from portal.api.problems import ApiProblem
from portal.api.views import bp, requires
from portal.container import services
from portal.db import db, is_database_unavailable
from portal.fiches import pdf
from portal.fiches import services as fiches
from portal.fiches.models import Fiche, FicheState
from portal.web import audit_context, the_user

FICHE_NOT_FOUND = fiches.NOT_FOUND
_BOXES = {"received": "recues", "sent": "envoyees", "drafts": "brouillons", "overdue": "en-retard"}


def _at(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _summary(row: fiches.Row) -> dict[str, Any]:
    fiche = row.fiche
    return {
        "id": fiche.id,
        "form": fiche.form_key,
        "form_name": row.form_name,
        "departement": fiche.departement_code,
        "state": fiche.state,
        "state_label": fiche.state_label,
        "overdue": fiche.is_overdue(),
        "person": row.person,
        "birth_date": row.birth_date,
        "sender_organisation": row.sender,
        "recipient_organisation": row.recipient,
        "forwarded_to": row.forwarded_to,
        "created_at": _at(fiche.created_at),
        "sent_at": _at(fiche.sent_at),
        "due_at": _at(fiche.due_at),
        "expires_at": _at(fiche.expires_at),
        "url": url_for("api.fiche_show", fiche_id=fiche.id),
    }


def _fiche_or_404(fiche_id: str) -> tuple[Any, Fiche]:
    user = the_user()
    fiche = fiches.find_fiche(db.session, user, fiche_id, audit_context())
    if fiche is None:
        raise ApiProblem(404, FICHE_NOT_FOUND)
    return user, fiche


# The status of a refusal by its code (`invalid` otherwise: 422).
_STATUS = {"file_too_large": 413, "antivirus_unavailable": 503}


def _refused(error: fiches.FicheError, renamed: dict[str, str] | None = None) -> ApiProblem:
    """A refusal of the services as a problem document, one `errors` element per field
    (*renamed*: the request's member for a field id of the form)."""
    renamed = renamed or {}
    code = error.code or "invalid"
    return ApiProblem(
        _STATUS.get(code, 422),
        str(error),
        code=code,
        extra={
            "errors": [{"field": renamed.get(k, k), "detail": v} for k, v in error.errors.items()]
        },
    )


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiProblem(400, "Le corps de la requête doit être un objet JSON.", code="invalid")
    return body


@bp.get("/fiches")
@requires(ApiScope.READ)
def fiche_list() -> Response:
    """Fiches received, sent, drafts or overdue (the 50 most recent)."""
    user = the_user()
    box = request.args.get("box", "received")
    if box not in _BOXES:
        raise ApiProblem(
            422,
            "Le paramètre « box » vaut received, sent, drafts ou overdue.",
            code="invalid",
            extra={"errors": [{"parameter": "box", "detail": "Valeur inconnue."}]},
        )
    rows = fiches.list_fiches(db.session, services(), user, _BOXES[box])
    return jsonify({"items": [_summary(r) for r in rows]})


@bp.post("/fiches")
@requires(ApiScope.DEPOSIT)
def fiche_create() -> tuple[Response, int, dict[str, str]]:
    """Send a fiche: `{"form", "departement", "recipient", "values"}` (see the document);
    with `"draft": true`, keep it as a draft (values may be missing) to attach its PDFs."""
    user = the_user()
    body = _json_body()
    svc = services()
    form_ref = body.get("form")
    form = None
    if isinstance(form_ref, str):
        form = svc.catalogue.get(form_ref) or svc.catalogue.latest(form_ref)
    values = body.get("values")
    fields_errors: dict[str, str] = {}
    if form is None:
        fields_errors["form"] = "Formulaire inconnu : voyez les formulaires du document OpenAPI."
    if not isinstance(body.get("departement"), str):
        fields_errors["departement"] = "Indiquez le code du département (espace)."
    if not isinstance(body.get("recipient"), str):
        fields_errors["recipient"] = "Indiquez l'identifiant de l'organisation destinataire."
    if not isinstance(values, dict):
        fields_errors["values"] = "Les valeurs de la fiche doivent être un objet JSON."
    as_draft = body.get("draft", False)
    if not isinstance(as_draft, bool):
        fields_errors["draft"] = "true (garder un brouillon) ou false (envoyer)."
    if fields_errors or form is None or not isinstance(values, dict):
        raise _refused(fiches.FicheError("La requête contient des erreurs.", fields_errors))
    draft = fiches.Draft(form.key, body["departement"], body["recipient"], values)
    try:
        if as_draft:
            fiche = fiches.create_draft(db.session, svc, user, draft, audit_context())
        else:
            fiche = fiches.submit(db.session, svc, user, draft, audit_context())
    except fiches.FicheError as e:
        raise _refused(e) from None
    location = url_for("api.fiche_show", fiche_id=fiche.id)
    return jsonify(_detail(user, fiche, with_values=False)), 201, {"Location": location}


def _detail(user: Any, fiche: Fiche, *, with_values: bool) -> dict[str, Any]:
    svc = services()
    opened = None
    if with_values:  # first: the recipient's first look marks the fiche received
        opened = fiches.open_fiche(db.session, svc, user, fiche, audit_context())
    person, born = fiches.inbox_person(svc, fiche)
    form = svc.catalogue.get(fiche.form_key)
    row = fiches.Row(fiche, form.name if form else fiche.form_id, person, born, "", "", None)
    result = _summary(row)
    names = fiches.stored_labels(
        db.session,
        {"s": fiche.sender_org_id, "r": fiche.recipient_org_id, "f": fiche.forwarded_org_id},
    )
    result.update(
        sender_organisation=names.get(fiche.sender_org_id, "—"),
        recipient_organisation=names.get(fiche.recipient_org_id, "—"),
        forwarded_to=names.get(fiche.forwarded_org_id) if fiche.forwarded_org_id else None,
        decision=fiche.decision,
        decided_on=fiche.decided_on.isoformat() if fiche.decided_on else None,
        replaces=fiche.replaces_id,
        replaced_by=fiche.replaced_by_id,
        history=[{"at": _at(s.when), "step": s.what} for s in fiches.history(db.session, fiche)],
        attachments=[
            {
                "field": a.field_id,
                "size": a.size,
                "sha256": a.sha256,
                "created_at": _at(a.created_at),
                "url": url_for("api.fiche_attachment", fiche_id=fiche.id, field_id=a.field_id),
            }
            for a in fiches.attachments_of(db.session, fiche.id)
            if a.object_key is not None
        ],
    )
    if opened is not None:
        result["values"] = opened.values
    return result


@bp.get("/fiches/<fiche_id>")
@requires(ApiScope.READ)
def fiche_show(fiche_id: str) -> Response:
    """One fiche with its values (audited as a consultation)."""
    user, fiche = _fiche_or_404(fiche_id)
    return jsonify(_detail(user, fiche, with_values=True))


@bp.get("/fiches/<fiche_id>/pdf")
@requires(ApiScope.READ)
def fiche_pdf(fiche_id: str) -> BaseResponse:
    """The fiche as a PDF (the page's layout, tagged PDF/UA-1), audited as a download."""
    user, fiche = _fiche_or_404(fiche_id)
    if fiche.state == FicheState.DESTROYED:
        raise ApiProblem(404, FICHE_NOT_FOUND)
    try:
        content = pdf.fiche_pdf(db.session, services(), user, fiche, audit_context())
    except fiches.FicheError:
        raise ApiProblem(404, FICHE_NOT_FOUND) from None
    return pdf.pdf_response(content, fiche.id)


@bp.put("/fiches/<fiche_id>")
@requires(ApiScope.DEPOSIT)
def fiche_update(fiche_id: str) -> Response:
    """Replace a draft's values: `{"values": {…}}` (and optionally `"recipient"`); missing
    values are allowed until it is sent, the attachments joined stay unless named."""
    user, fiche = _fiche_or_404(fiche_id)
    body = _json_body()
    values = body.get("values")
    recipient = body.get("recipient", fiche.recipient_org_id)
    errors: dict[str, str] = {}
    if not isinstance(values, dict):
        errors["values"] = "Les valeurs de la fiche doivent être un objet JSON."
    if not isinstance(recipient, str):
        errors["recipient"] = "Indiquez l'identifiant de l'organisation destinataire."
    if errors or not isinstance(values, dict) or not isinstance(recipient, str):
        raise _refused(fiches.FicheError("La requête contient des erreurs.", errors))
    draft = fiches.Draft(fiche.form_key, fiche.departement_code, recipient, values)
    try:
        fiche = fiches.create_draft(
            db.session, services(), user, draft, audit_context(), fiche=fiche
        )
    except fiches.FicheError as e:
        raise _refused(e) from None
    return jsonify(_detail(user, fiche, with_values=False))


@bp.post("/fiches/<fiche_id>/send")
@requires(ApiScope.DEPOSIT)
def fiche_send(fiche_id: str) -> Response:
    """Send a draft (created with `"draft": true`): checked as a new fiche, errors per field."""
    user, fiche = _fiche_or_404(fiche_id)
    try:
        fiches.send(db.session, services(), user, fiche, audit_context())
    except fiches.FicheError as e:
        raise _refused(e) from None
    return jsonify(_detail(user, fiche, with_values=False))


_DECISION_FIELDS = {"entree_accompagnement": "decision", "date_decision": "decided_on"}


@bp.post("/fiches/<fiche_id>/decision")
@requires(ApiScope.DEPOSIT)
def fiche_decide(fiche_id: str) -> Response:
    """The receiving side's decision on a bilatérale fiche: `{"decision": "oui"|"non",
    "decided_on": "AAAA-MM-JJ"}`; the prescriber is told by e-mail."""
    user, fiche = _fiche_or_404(fiche_id)
    body = _json_body()
    decision = body.get("decision")
    values = {
        "entree_accompagnement": decision.lower() if isinstance(decision, str) else decision,
        "date_decision": body.get("decided_on"),
    }
    try:
        fiches.record_decision(db.session, services(), user, fiche, values, audit_context())
    except fiches.FicheError as e:
        raise _refused(e, _DECISION_FIELDS) from None
    return jsonify(_detail(user, fiche, with_values=False))


@bp.post("/fiches/<fiche_id>/forward")
@requires(ApiScope.DEPOSIT)
def fiche_forward(fiche_id: str) -> Response:
    """The SLAI forwards a fiche it received to a provider its département mandates:
    `{"provider": "<organisation id>"}`."""
    user, fiche = _fiche_or_404(fiche_id)
    provider = _json_body().get("provider")
    try:
        if not isinstance(provider, str):
            raise fiches.FicheError(
                "Indiquez le prestataire.", {"provider": "L'identifiant d'une organisation."}
            )
        fiches.forward(db.session, services(), user, fiche, provider, audit_context())
    except fiches.FicheError as e:
        raise _refused(e) from None
    return jsonify(_detail(user, fiche, with_values=False))


@bp.put("/fiches/<fiche_id>/attachments/<field_id>")
@requires(ApiScope.DEPOSIT)
def fiche_attach(fiche_id: str, field_id: str) -> tuple[Response, int, dict[str, str]]:
    """A PDF for an attachment field of a draft, the raw request body (10 Mo at most; active
    content and antivirus checked, clamd failing closed; encrypted); replaces the previous one."""
    user, fiche = _fiche_or_404(fiche_id)
    limit = fiches.ATTACHMENT_MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise _refused(
            fiches.FicheError(
                "La pièce jointe doit être un fichier PDF de 10 Mo au plus.",
                {field_id[:48]: "10 Mo au plus."},
                code="file_too_large",
            )
        )
    content = request.stream.read(limit + 1)
    try:
        attachment = fiches.attach(
            db.session, services(), user, fiche, field_id, content, audit_context()
        )
    except fiches.FicheError as e:
        raise _refused(fiches.FicheError(str(e), {field_id[:48]: str(e)}, code=e.code)) from None
    except storage.StorageUnavailable as e:
        if is_database_unavailable(e):
            raise  # the keyring's database, not the store: answered 503 by the app
        raise ApiProblem(
            503,
            "Le stockage est momentanément indisponible : réessayez plus tard.",
            code="storage_unavailable",
        ) from None
    location = url_for("api.fiche_attachment", fiche_id=fiche.id, field_id=field_id)
    body = {
        "field": field_id,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "created_at": _at(attachment.created_at),
        "url": location,
    }
    return jsonify(body), 201, {"Location": location}


@bp.get("/fiches/<fiche_id>/attachments/<field_id>")
@requires(ApiScope.READ)
def fiche_attachment(fiche_id: str, field_id: str) -> BaseResponse:
    """The PDF an attachment field of the fiche holds, decrypted (audited as a consultation)."""
    user, fiche = _fiche_or_404(fiche_id)
    attachment = fiches.live_attachment(db.session, fiche, field_id)
    found = (
        fiches.open_attachment(db.session, services(), user, fiche, attachment.id, audit_context())
        if attachment is not None
        else None
    )
    if found is None:
        raise ApiProblem(404, "Cette pièce jointe n'existe pas ou vous n'y avez pas accès.")
    response = BaseResponse(found[1], mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="piece-jointe.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
