"""REST API of the fiches de liaison: send a fiche as JSON, list them, read one.

Registered on the API blueprint of `portal.api.views`: same bearer tokens, scopes, rate limit
and problem documents. `POST /fiches` takes the values the web form produces, checked by the
same validator against the same catalogue; a refusal answers 422 with `errors` per field.
Reading a fiche is audited, as on the web.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from portal.api.models import ApiScope
from portal.api.problems import ApiProblem
from portal.api.views import bp, requires
from portal.container import services
from portal.db import db
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


def _refused(error: fiches.FicheError) -> ApiProblem:
    return ApiProblem(
        422,
        str(error),
        code="invalid",
        extra={"errors": [{"field": k, "detail": v} for k, v in error.errors.items()]},
    )


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
    """Send a fiche: `{"form", "departement", "recipient", "values"}` (see the document)."""
    user = the_user()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiProblem(400, "Le corps de la requête doit être un objet JSON.", code="invalid")
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
    if fields_errors or form is None or not isinstance(values, dict):
        raise _refused(fiches.FicheError("La requête contient des erreurs.", fields_errors))
    draft = fiches.Draft(form.key, body["departement"], body["recipient"], values)
    try:
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
