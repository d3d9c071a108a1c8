"""HTTP side of deposits: inbox and outbox, new deposit, upload, page, links, download."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import unquote

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response as BaseResponse

import storage
from portal.accounts.models import User
from portal.container import services
from portal.db import db, is_database_unavailable, utcnow
from portal.deposits import downloads, notifications, resumable
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.forms import DIGEST, EACH, HINTS, NewDepositForm, NotificationPreferenceForm
from portal.deposits.listing import PAGE_SIZE, Filters, list_deposits
from portal.deposits.models import CATEGORY_LABELS, Category, Deposit, Reason
from portal.deposits.permissions import (
    can_create_deposit,
    can_download,
    can_withdraw,
    categories_of,
    is_sender_side,
)
from portal.filecheck import content_disposition
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.permissions import spaces_of
from portal.web import audit_context, server_sends_buffers, the_user

bp = Blueprint("deposits", __name__)
# Mon compte → notifications: how a user hears of new deposits (one e-mail each, or one daily
# digest); its own blueprint keeps the endpoint `preferences.notifications`.
preferences_bp = Blueprint("preferences", __name__)

UPLOAD_CHUNK = 1024 * 1024


def _deposit_or_404(deposit_id: str) -> tuple[User, Deposit]:
    user = the_user()
    deposit = deposits.find_deposit(db.session, user, deposit_id, audit_context())
    if deposit is None:
        abort(404)
    return user, deposit


@bp.route("/depots")
def inbox() -> str:
    """Deposits received (or sent) in the user's spaces, filtered and paginated on the server."""
    user = the_user()
    filters = Filters.from_args(request.args, user)
    page = list_deposits(db.session, user, filters)
    return render_template(
        "deposits/list.html",
        page=page,
        filters=filters,
        spaces=[(c, DEPARTEMENTS[c]) for c in sorted(spaces_of(user))],
        categories=[(str(c), CATEGORY_LABELS[c]) for c in sorted(categories_of(user))],
        page_size=PAGE_SIZE,
        can_create=can_create_deposit(user),
    )


def _new_form(user: User) -> NewDepositForm:
    form = NewDepositForm()
    spaces = sorted(spaces_of(user))
    form.departement.choices = [(c, f"{c} — {DEPARTEMENTS[c]}") for c in spaces]
    # Flows have their own page, which validates them before they are sent.
    form.category.choices = [
        (str(c), CATEGORY_LABELS[c]) for c in sorted(categories_of(user)) if c != Category.FLUX_XML
    ]
    departement = (
        form.departement.data or request.args.get("espace") or (spaces[0] if spaces else "")
    )
    if departement not in spaces and spaces:
        departement = spaces[0]
    form.departement.data = departement
    orgs = deposits.recipient_choices(db.session, user, departement) if departement else []
    form.recipients.choices = [(o.id, f"{o.name} ({o.kind_label})") for o in orgs]
    people: Iterable[User] = (
        db.session.execute(
            sa.select(User)
            .where(User.organisation_id.in_([o.id for o in orgs]), User.status == "active")
            .order_by(User.full_name)
        ).scalars()
        if orgs
        else []
    )
    form.recipient_users.choices = [
        (u.id, f"{u.full_name} ({u.organisation.name})")
        for u in people
        if u.id != user.id and categories_of(u)
    ]
    return form


@bp.route("/depots/nouveau", methods=["GET", "POST"])
def new() -> str | BaseResponse:
    """First step: what, for whom, how long; then files are added to the draft."""
    user = the_user()
    if not can_create_deposit(user):
        abort(404)
    form = _new_form(user)
    error = None
    if request.method == "POST" and request.form.get("action") == "espace":
        return render_template(
            "deposits/new.html",
            form=form,
            error=None,
            weekly_file_days=services().settings.weekly_file_lifetime_days,
        )
    if form.validate_on_submit():
        try:
            deposit = deposits.create_draft(
                db.session,
                user,
                deposits.NewDeposit(
                    departement=form.departement.data,
                    category=Category(form.category.data),
                    title=form.title.data or "",
                    reason=Reason(form.reason.data) if form.reason.data else None,
                    recipient_org_ids=form.recipients.data or [],
                    recipient_user_ids=form.recipient_users.data or [],
                    lifetime_days=form.lifetime_days.data,
                    max_downloads=form.max_downloads.data,
                ),
                audit_context(),
                weekly_file_days=services().settings.weekly_file_lifetime_days,
            )
        except deposits.DepositError as e:
            field = getattr(form, e.field, None) if e.field else None
            if field is not None:
                field.errors = [*field.errors, str(e)]
            else:
                error = str(e)
        else:
            return redirect(url_for("deposits.files", deposit_id=deposit.id))
    # Field errors: the template's error summary lists them, each linked to its field.
    return render_template(
        "deposits/new.html",
        form=form,
        error=error,
        weekly_file_days=services().settings.weekly_file_lifetime_days,
    )


@bp.route("/depots/<deposit_id>/fichiers", methods=["GET"])
def files(deposit_id: str) -> str:
    """Second step: drag and drop files, with a progress bar each, then send."""
    user, deposit = _deposit_or_404(deposit_id)
    if deposit.status != "draft" or deposit.sender_id != user.id:
        abort(404)
    svc = services()
    chunk_bytes = None
    if svc.settings.resumable_uploads:  # tus-js-client's pieces, on the rules of the API's
        chunk_bytes = resumable.limits_of(svc.store, svc.settings).browser_chunk
    return render_template(
        "deposits/files.html",
        deposit=deposit,
        max_bytes=svc.settings.max_upload_bytes,
        chunk_bytes=chunk_bytes,
    )


def _request_chunks() -> Iterator[bytes]:
    stream = request.stream
    while True:
        chunk = stream.read(UPLOAD_CHUNK)
        if not chunk:
            return
        yield chunk


@bp.route("/depots/<deposit_id>/fichiers", methods=["POST"])
def upload(deposit_id: str) -> tuple[Response, int]:
    """Receive one file as the raw request body (streamed, encrypted as it arrives)."""
    user, deposit = _deposit_or_404(deposit_id)
    svc = services()
    name = unquote(request.headers.get("X-Filename", ""))[:1000]
    if not name:
        return jsonify(error="Nom de fichier manquant."), 400
    if (
        request.content_length is not None
        and request.content_length > svc.settings.max_upload_bytes
    ):
        return jsonify(error="Fichier trop volumineux."), 413
    try:
        record = deposits.add_file(
            db.session, svc.store, user, deposit, name, _request_chunks(),
            size_limit=svc.settings.max_upload_bytes, ctx=audit_context(),
            antivirus=Antivirus.of(svc), declared_size=request.content_length,
        )  # fmt: skip
    except deposits.FileTooLarge as e:
        return jsonify(error=str(e)), 413
    except deposits.DepositError as e:
        return jsonify(error=str(e)), 422
    except storage.StorageUnavailable as e:
        if is_database_unavailable(e):
            raise  # the keyring's database, not the store: answered 503 by the app
        return jsonify(
            error="Le stockage est momentanément indisponible : réessayez plus tard."
        ), 503
    return jsonify(id=record.id, name=record.filename, size=record.size, sha256=record.sha256), 201


@bp.route("/depots/<deposit_id>/envoyer", methods=["POST"])
def send(deposit_id: str) -> BaseResponse:
    """Publish the draft and notify its recipients."""
    user, deposit = _deposit_or_404(deposit_id)
    try:
        sent = notifications.publish_and_notify(
            db.session, services(), user, deposit, audit_context()
        )
    except deposits.DepositError as e:
        flash(str(e), "error")
        return redirect(url_for("deposits.files", deposit_id=deposit_id))
    if sent is None:
        flash(
            "Analyse antivirus en attente : le dépôt sera transmis à ses destinataires dès que "
            "ses fichiers auront été analysés.",
            "info",
        )
    else:
        flash(f"Le dépôt a été envoyé ; {sent} destinataire(s) prévenu(s) par e-mail.", "success")
    return redirect(url_for("deposits.show", deposit_id=deposit_id))


@bp.route("/depots/<deposit_id>")
def show(deposit_id: str) -> str | BaseResponse:
    """Files, expiry and acknowledgement of receipt of one deposit."""
    user, deposit = _deposit_or_404(deposit_id)
    if deposit.category == Category.FLUX_XML:
        from portal.flows.services import flow_of_deposit

        flow = flow_of_deposit(db.session, deposit.id)
        if flow is not None:  # the flow's page: validation, sanity, flag, and the same files
            return redirect(url_for("flows.show", flow_id=flow.id))
    # The acknowledgement of receipt is the sending side's, as in the API: a recipient does not
    # learn who, in another recipient organisation (a provider, France Travail), downloaded what.
    sender_side = is_sender_side(user, deposit)
    receipts = downloads.receipts_of(db.session, deposit) if sender_side else []
    sender = db.session.get(User, deposit.sender_id)
    taken_by = db.session.get(User, deposit.taken_by_id) if deposit.taken_by_id else None
    return render_template(
        "deposits/show.html",
        deposit=deposit,
        sender=sender,
        taken_by=taken_by,
        receipts=receipts,
        show_receipts=sender_side,
        can_download=can_download(user, deposit),
        can_withdraw=can_withdraw(user, deposit),
        can_take=deposit.status == "available"
        and any(r.organisation_id == user.organisation_id for r in deposit.recipients),
        files_by_id={f.id: f for f in deposit.files},
        departement_name=DEPARTEMENTS[deposit.departement_code],
    )


@bp.route("/depots/<deposit_id>/fichiers/<file_id>/lien", methods=["POST"])
def link(deposit_id: str, file_id: str) -> BaseResponse:
    """Issue a five-minute signed link for one file and follow it."""
    user, deposit = _deposit_or_404(deposit_id)
    file = next((f for f in deposit.files if f.id == file_id), None)
    if file is None:
        abort(404)
    try:
        token = downloads.issue_link(
            db.session, services().settings.secret_key, user, deposit, file, audit_context()
        )
    except deposits.LinkRefused as e:
        flash(str(e), "error")
        return redirect(url_for("deposits.show", deposit_id=deposit_id))
    return redirect(url_for("deposits.download", token=token))


def streamed(download: downloads.Download) -> Response:
    """The decrypted file as an attachment that no browser will render or cache."""
    response = Response(
        download.chunks, mimetype=download.file.content_type, direct_passthrough=True
    )
    response.headers["Content-Disposition"] = content_disposition(download.file.filename)
    response.headers["Content-Length"] = str(download.file.size)
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/telechargement/<token>")
def download(token: str) -> Response | BaseResponse:
    """Check the link again, then stream the decrypted file."""
    user = the_user()
    try:
        result = downloads.redeem_link(
            db.session,
            services(),
            user,
            token[:1024],
            audit_context(),
            reuse_buffers=server_sends_buffers(),
        )
    except deposits.LinkRefused:
        abort(404)
    except deposits.FileCorrupted as e:
        # 502: the store gave back data that is not the file deposited (RFC 9110 §15.6.3).
        page = render_template(
            "errors/error.html",
            status=502,
            title="Fichier endommagé",
            message=str(e),
            request_id=g.get("request_id"),
        )
        return Response(page, status=502)
    return streamed(result)


REMOVAL_PENDING = (
    "Le dépôt a été retiré et détruit : son contenu ne peut plus être lu par personne. "
    "Le stockage étant momentanément indisponible, la suppression du contenu chiffré est en "
    "attente : elle sera faite automatiquement dès son retour."
)


@bp.route("/depots/<deposit_id>/retirer", methods=["POST"])
def withdraw(deposit_id: str) -> BaseResponse:
    """Withdraw the deposit: its content is destroyed at once."""
    user, deposit = _deposit_or_404(deposit_id)
    try:
        removal_pending = deposits.withdraw(
            db.session, services().store, user, deposit, audit_context()
        )
    except (deposits.AlreadyWithdrawn, deposits.AlreadyDestroyed) as e:
        flash(str(e), "info")
    except deposits.DepositError as e:
        flash(str(e), "error")
    else:
        if removal_pending:
            flash(REMOVAL_PENDING, "warning")
        else:
            flash("Le dépôt a été retiré : son contenu a été détruit.", "success")
    return redirect(url_for("deposits.show", deposit_id=deposit_id))


@bp.route("/depots/<deposit_id>/prendre-en-charge", methods=["POST"])
def take(deposit_id: str) -> BaseResponse:
    """Mark a deposit of the shared inbox as handled by me."""
    user, deposit = _deposit_or_404(deposit_id)
    try:
        deposits.take_in_charge(db.session, user, deposit, audit_context())
    except deposits.DepositError as e:
        flash(str(e), "error")
    else:
        flash("Vous avez pris ce dépôt en charge.", "success")
    return redirect(url_for("deposits.show", deposit_id=deposit_id))


@preferences_bp.route("/compte/notifications", methods=["GET", "POST"], endpoint="notifications")
def notification_preferences() -> str | BaseResponse:
    """Show and save the user's choice of notification."""
    user = the_user()
    form = NotificationPreferenceForm()
    if form.validate_on_submit():
        deposits.set_daily_digest(db.session, user, form.mode.data == DIGEST, utcnow())
        flash("Vos préférences de notification ont été enregistrées.", "success")
        return redirect(url_for("preferences.notifications"))
    if not form.is_submitted():
        form.mode.data = DIGEST if user.daily_digest else EACH
    return render_template("deposits/preferences.html", form=form, hints=HINTS)
