"""HTTP side of fiches: inbox, new fiche, draft, fiche page, decision, forwarding, correction."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response as BaseResponse
from wtforms.fields.choices import SelectChoice

from portal.accounts.models import Role, User
from portal.container import services
from portal.db import db
from portal.fiches import pdf
from portal.fiches import services as fiches
from portal.fiches.catalogue import Form
from portal.fiches.forms import DecisionForm, ForwardForm, form_state, values_from_form
from portal.fiches.models import Fiche, FicheState
from portal.fiches.permissions import (
    can_correct,
    can_decide,
    is_recipient_side,
    is_sender_side,
)
from portal.fiches.validator import validate
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.permissions import spaces_of
from portal.web import audit_context, the_user

bp = Blueprint("fiches", __name__)

BOX_LABELS = {
    "recues": "Reçues",
    "envoyees": "Envoyées",
    "brouillons": "Brouillons",
    "en-retard": "Sans réponse",
}


def _handler() -> User:
    user = the_user()
    if not user.has_role(Role.AGENT):
        abort(404)
    return user


def _fiche_or_404(fiche_id: str) -> tuple[User, Fiche]:
    user = the_user()
    fiche = fiches.find_fiche(db.session, user, fiche_id, audit_context())
    if fiche is None:
        abort(404)
    return user, fiche


@bp.route("/fiches", methods=["GET", "POST"])
def inbox() -> str:
    """Fiches received, sent, drafts, overdue; a search on the person's surname (exact).

    The surname is personal data: it is posted (with the CSRF token), never put in the URL
    (browser history, logs, the log-in page's `next`); a `nom` in the query string is ignored.
    """
    user = _handler()
    box = request.values.get("boite", "recues")
    if box not in BOX_LABELS:
        box = "recues"
    surname = (request.form.get("nom") or "").strip()[:60] or None
    after = (request.values.get("apres") or "")[:200] or None
    svc = services()
    page = fiches.fiches_page(db.session, svc, user, box, surname=surname, after=after)
    return render_template(
        "fiches/list.html",
        rows=page.rows,
        next_cursor=page.next_cursor,
        after=after,
        box=box,
        boxes=BOX_LABELS,
        surname=surname or "",
        can_create=any(fiches.offered_forms(svc, user, c) for c in spaces_of(user)),
    )


@bp.route("/fiches/suivi")
def follow_up() -> str:
    """The monthly follow-up table: its own page, so that no inbox page aggregates."""
    user = _handler()
    return render_template("fiches/follow_up.html", counts=fiches.monthly_counts(db.session, user))


@bp.route("/fiches/nouvelle")
def choose() -> str:
    """First step: the space and the form."""
    user = _handler()
    svc = services()
    spaces = sorted(spaces_of(user))
    offered = {c: fiches.offered_forms(svc, user, c) for c in spaces}
    return render_template(
        "fiches/choose.html",
        offered=[(c, DEPARTEMENTS[c], forms) for c, forms in offered.items() if forms],
    )


def _render_edit(
    user: User,
    form: Form,
    departement: str,
    state: dict[str, Any],
    recipient: str | None,
    errors: dict[str, str],
    fiche: Fiche | None = None,
    problem: str | None = None,
) -> str:
    refs = fiches.references(db.session, user, form, departement, {})
    return render_template(
        "fiches/edit.html",
        form=form,
        departement=departement,
        departement_name=DEPARTEMENTS[departement],
        recipients=fiches.recipient_choices(db.session, user, form, departement),
        recipient=recipient,
        choices=refs.choices,
        state=state,
        errors=errors,
        fiche=fiche,
        problem=problem,
    )


def _save(user: User, form: Form, departement: str, fiche: Fiche | None) -> str | BaseResponse:
    values = values_from_form(form, request.form)
    recipient = request.form.get("destinataire") or ""
    draft = fiches.Draft(form.key, departement, recipient, values)
    try:
        saved, errors = fiches.save_draft(
            db.session, services(), user, draft, audit_context(), fiche=fiche
        )
    except fiches.FicheError as e:
        return _render_edit(
            user, form, departement, form_state(form, values), recipient, e.errors, fiche, str(e)
        )
    if errors:
        return _render_edit(
            user, form, departement, form_state(form, values), recipient, errors, saved,
            "Le brouillon est enregistré, sauf les champs en erreur.",
        )  # fmt: skip
    flash("Brouillon enregistré : relisez la fiche avant de l'envoyer.", "success")
    return redirect(url_for("fiches.show", fiche_id=saved.id))


@bp.route("/fiches/nouvelle/<form_id>", methods=["GET", "POST"])
def new(form_id: str) -> str | BaseResponse:
    """The form of a new fiche (saved as a draft, reviewed, then sent)."""
    user = _handler()
    svc = services()
    departement = request.args.get("espace", "")
    form = svc.catalogue.latest(form_id)
    if form is None or form not in fiches.offered_forms(svc, user, departement):
        abort(404)
    if request.method == "POST":
        return _save(user, form, departement, None)
    return _render_edit(user, form, departement, {}, None, {})


@bp.route("/fiches/<fiche_id>/modifier", methods=["GET", "POST"])
def edit(fiche_id: str) -> str | BaseResponse:
    """A draft's form, filled with what was saved."""
    user, fiche = _fiche_or_404(fiche_id)
    svc = services()
    form = svc.catalogue.get(fiche.form_key)
    if form is None or fiche.state != FicheState.DRAFT or fiche.sender_id != user.id:
        abort(404)
    if request.method == "POST":
        return _save(user, form, fiche.departement_code, fiche)
    values = fiches.read_values(db.session, svc.store, fiche)
    return _render_edit(
        user, form, fiche.departement_code, form_state(form, values), fiche.recipient_org_id, {},
        fiche,
    )  # fmt: skip


@bp.route("/fiches/<fiche_id>")
def show(fiche_id: str) -> str:
    """The fiche (audited), its history, and what the user may do with it."""
    user, fiche = _fiche_or_404(fiche_id)
    svc = services()
    try:
        opened = fiches.open_fiche(db.session, svc, user, fiche, audit_context())
    except fiches.FicheError:
        abort(404)
    send_errors: dict[str, str] = {}
    if fiche.state == FicheState.DRAFT:
        send_errors = validate(opened.form, opened.values)
    decision_form = DecisionForm(prefix="decision") if can_decide(user, fiche) else None
    forward_form = None
    providers = fiches.forward_choices(db.session, user, fiche)
    if providers:
        forward_form = ForwardForm(prefix="transmission")
        forward_form.provider.choices = [SelectChoice(p.id, p.name) for p in providers]
    attachment_fields = (
        [f for f in opened.form.fields() if f.type == "attachment"]
        if fiche.state == FicheState.DRAFT and fiche.sender_id == user.id
        else []
    )
    departement_name = DEPARTEMENTS[fiche.departement_code]
    return render_template(
        "fiches/show.html",
        fiche=fiche,
        opened=opened,
        # The blocks with the data-protection contacts, and the digest: as the PDF prints them.
        sheet=pdf.sheet_of(opened, pdf.contacts_of(svc), departement_name),
        attachment_fields=attachment_fields,
        attachments=fiches.attachments_of(db.session, fiche.id),
        person=fiches.inbox_person(svc, fiche),
        steps=fiches.history(db.session, fiche),
        send_errors=send_errors,
        decision_form=decision_form,
        forward_form=forward_form,
        can_correct=can_correct(user, fiche),
        is_sender=is_sender_side(user, fiche),
        is_recipient=is_recipient_side(user, fiche),
        departement_name=departement_name,
    )


@bp.route("/fiches/<fiche_id>/pdf")
def pdf_download(fiche_id: str) -> BaseResponse:
    """The fiche as a PDF: the page's template in a print layout, rendered in memory, audited."""
    user, fiche = _fiche_or_404(fiche_id)
    if fiche.state == FicheState.DESTROYED:
        abort(404)
    try:
        content = pdf.fiche_pdf(db.session, services(), user, fiche, audit_context())
    except fiches.FicheError:
        abort(404)
    return pdf.pdf_response(content, fiche.id)


@bp.route("/fiches/<fiche_id>/envoyer", methods=["POST"])
def send(fiche_id: str) -> BaseResponse:
    user, fiche = _fiche_or_404(fiche_id)
    try:
        fiches.send(db.session, services(), user, fiche, audit_context())
    except fiches.FicheError as e:
        flash(f"{e} Complétez le brouillon.", "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id))
    flash("Fiche envoyée : son destinataire est prévenu par e-mail.", "success")
    return redirect(url_for("fiches.show", fiche_id=fiche_id))


@bp.route("/fiches/<fiche_id>/decision", methods=["POST"])
def decide(fiche_id: str) -> str | BaseResponse:
    user, fiche = _fiche_or_404(fiche_id)
    form = DecisionForm(prefix="decision")
    if not form.validate_on_submit():
        flash("Choisissez OUI ou NON et indiquez la date de la décision.", "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id) + "#decision")
    values = {
        "entree_accompagnement": form.entree_accompagnement.data,
        "date_decision": form.date_decision.data.isoformat(),
    }
    try:
        fiches.record_decision(db.session, services(), user, fiche, values, audit_context())
    except fiches.FicheError as e:
        flash(str(e), "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id))
    flash("Décision enregistrée : la structure prescriptrice est prévenue.", "success")
    return redirect(url_for("fiches.show", fiche_id=fiche_id))


@bp.route("/fiches/<fiche_id>/transmettre", methods=["POST"])
def forward(fiche_id: str) -> BaseResponse:
    user, fiche = _fiche_or_404(fiche_id)
    form = ForwardForm(prefix="transmission")
    form.provider.choices = [
        (p.id, p.name) for p in fiches.forward_choices(db.session, user, fiche)
    ]
    if not form.validate_on_submit():
        flash("Choisissez un des prestataires proposés.", "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id))
    try:
        fiches.forward(db.session, services(), user, fiche, form.provider.data, audit_context())
    except fiches.FicheError as e:
        flash(str(e), "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id))
    flash("Fiche transmise au prestataire mandaté.", "success")
    return redirect(url_for("fiches.show", fiche_id=fiche_id))


@bp.route("/fiches/<fiche_id>/corriger", methods=["POST"])
def correct(fiche_id: str) -> BaseResponse:
    user, fiche = _fiche_or_404(fiche_id)
    try:
        new = fiches.correct(db.session, services(), user, fiche, audit_context())
    except fiches.FicheError as e:
        flash(str(e), "error")
        return redirect(url_for("fiches.show", fiche_id=fiche_id))
    flash(
        "Une fiche corrigée a été préparée : elle remplacera l'ancienne une fois envoyée.",
        "success",
    )
    return redirect(url_for("fiches.edit", fiche_id=new.id))


@bp.route("/fiches/<fiche_id>/pieces/<field_id>", methods=["POST"])
def attach(fiche_id: str, field_id: str) -> tuple[Response, int]:
    """A PDF for an attachment field of a draft, as the raw request body (never multipart)."""
    user, fiche = _fiche_or_404(fiche_id)
    limit = fiches.ATTACHMENT_MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error="La pièce jointe doit être un fichier PDF de 10 Mo au plus."), 413
    content = request.stream.read(limit + 1)
    try:
        fiches.attach(db.session, services(), user, fiche, field_id, content, audit_context())
    except fiches.FicheError as e:
        return jsonify(error=str(e)), 422
    flash("Pièce jointe enregistrée (chiffrée).", "success")
    return jsonify(stored=True), 201


@bp.route("/fiches/<fiche_id>/pieces/<attachment_id>")
def attachment(fiche_id: str, attachment_id: str) -> BaseResponse:
    """An attachment of a fiche, decrypted for someone who may see the fiche (audited)."""
    user, fiche = _fiche_or_404(fiche_id)
    found = fiches.open_attachment(
        db.session, services(), user, fiche, attachment_id, audit_context()
    )
    if found is None:
        abort(404)
    response = BaseResponse(found[1], mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="piece-jointe.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
