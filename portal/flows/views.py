"""HTTP side of flows: deposit with validation, the flow's page and report, follow-up table."""

from __future__ import annotations

import functools
from datetime import date
from urllib.parse import unquote

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

import storage
from portal.accounts.models import User
from portal.container import services
from portal.db import db, is_database_unavailable
from portal.deposits import downloads
from portal.deposits import services as deposits
from portal.deposits.permissions import can_download, can_withdraw, is_sender_side
from portal.deposits.views import UPLOAD_CHUNK
from portal.flows import services as flows
from portal.flows.core.types import FlowType
from portal.flows.core.validator import paris_today
from portal.flows.follow_up import active_departements, follow_up, follow_up_csv
from portal.flows.models import FlowDeposit
from portal.flows.permissions import can_deposit_flow, depositable_flows, follow_up_spaces
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.permissions import spaces_of
from portal.web import audit_context, the_user

bp = Blueprint("flows", __name__)


def _flow_or_404(flow_id: str) -> tuple[User, FlowDeposit]:
    user = the_user()
    flow = flows.find_flow(db.session, user, flow_id, audit_context())
    if flow is None:
        abort(404)
    return user, flow


def _month(raw: str | None) -> date:
    today = paris_today()
    try:
        year, month = (int(part) for part in (raw or "").split("-"))
        return date(year, month, 1) if 2020 <= year <= today.year + 1 else today.replace(day=1)
    except ValueError:
        return today.replace(day=1)


def _shift(month: date, delta: int) -> str:
    index = month.year * 12 + month.month - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _follow_up_args() -> tuple[User, date, list[str], str | None]:
    user = the_user()
    scope = follow_up_spaces(user)
    if not scope:
        abort(404)
    month = _month(request.args.get("mois"))
    departements = active_departements(db.session, scope)
    chosen = request.args.get("espace") or None
    if chosen is not None:
        if chosen not in scope:
            abort(404)
        departements = [chosen]
    return user, month, departements, chosen


@bp.route("/flux")
def index() -> BaseResponse:
    """The flows' entry point is the follow-up table."""
    return redirect(url_for("flows.follow_up_page"))


@bp.route("/flux/suivi")
def follow_up_page() -> str:
    """The monthly follow-up table of the user's départements (all of them, nationally)."""
    user, month, departements, chosen = _follow_up_args()
    rows = follow_up(db.session, departements, month.year, month.month)
    return render_template(
        "flows/follow_up.html",
        rows=rows,
        month=month,
        month_label=flows.period_label(None, month),
        previous_month=_shift(month, -1),
        next_month=_shift(month, 1),
        chosen=chosen,
        choices=[
            (c, DEPARTEMENTS[c]) for c in active_departements(db.session, follow_up_spaces(user))
        ],
        visible_spaces=spaces_of(user),
        can_deposit=bool(depositable_flows(user) and spaces_of(user)),
        departements=DEPARTEMENTS,
    )


@bp.route("/flux/suivi.csv")
def follow_up_export() -> Response:
    """The same table as CSV."""
    _, month, departements, _ = _follow_up_args()
    rows = follow_up(db.session, departements, month.year, month.month)
    response = Response("\ufeff" + follow_up_csv(rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="suivi-flux-{month.strftime("%Y-%m")}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/flux/deposer", methods=["GET"])
def new() -> str:
    """Choose the space and the flow (or let the header say), then upload the file."""
    user = the_user()
    allowed = depositable_flows(user)
    spaces = sorted(spaces_of(user))
    if not allowed or not spaces:
        abort(404)
    chosen = request.args.get("espace") or spaces[0]
    if chosen not in spaces:
        abort(404)
    return render_template(
        "flows/new.html",
        spaces=[(c, DEPARTEMENTS[c]) for c in spaces],
        chosen=chosen,
        flow_types=allowed,
        max_bytes=services().settings.max_upload_bytes,
    )


@bp.route("/flux/deposer", methods=["POST"])
def upload() -> tuple[Response, int]:
    """Receive the file as the raw request body; validate it; deliver it or refuse it whole."""
    user = the_user()
    departement = request.args.get("espace", "")
    if not can_deposit_flow(user, departement):
        abort(404)
    raw_type = request.args.get("type") or None
    try:
        expected = FlowType(raw_type) if raw_type else None
    except ValueError:
        return jsonify(error="Type de flux inconnu."), 422
    svc = services()
    name = unquote(request.headers.get("X-Filename", ""))[:1000]
    if not name:
        return jsonify(error="Nom de fichier manquant."), 400
    if (
        request.content_length is not None
        and request.content_length > svc.settings.max_upload_bytes
    ):
        return jsonify(error="Fichier trop volumineux."), 413
    chunks = iter(functools.partial(request.stream.read, UPLOAD_CHUNK), b"")
    try:
        outcome = flows.deposit_flow(
            db.session, svc, user, departement, expected, name, chunks, audit_context(),
            declared_size=request.content_length,
        )  # fmt: skip
    except deposits.FileTooLarge as e:
        return jsonify(error=str(e)), 413
    except deposits.FileCorrupted as e:
        # 502: the store gave back data that is not the file written (RFC 9110 §15.6.3).
        return jsonify(error=str(e)), 502
    except deposits.DepositError as e:
        return jsonify(error=str(e)), 422
    except storage.StorageUnavailable as e:
        if is_database_unavailable(e):
            raise  # the keyring's database, not the store: answered 503 by the app
        return jsonify(
            error="Le stockage est momentanément indisponible : réessayez plus tard."
        ), 503
    # 201 either way: the flow's page (acknowledgement or report) now exists; whether the file
    # was delivered is `is_valid` (the API answers a refused file with a 422 problem instead).
    url = url_for("flows.show", flow_id=outcome.flow.id)
    report = outcome.report
    return jsonify(
        id=outcome.flow.id,
        url=url,
        is_valid=outcome.flow.is_valid,
        # Valid, but delivered once the antivirus has scanned it (`filr jobs antivirus`).
        scan_pending=outcome.held_for_scan,
        error_count=report.error_count,
        warning_count=report.warning_count,
    ), 201


@bp.route("/flux/depots/<flow_id>")
def show(flow_id: str) -> str:
    """A flow: the acknowledgement of a valid one, the report of a refused one."""
    user, flow = _flow_or_404(flow_id)
    svc = services()
    deposit = flow.deposit
    report = flows.open_report(svc.settings.secret_key, flow)
    sender_side = is_sender_side(user, deposit)
    receipts = downloads.receipts_of(db.session, deposit) if sender_side else []
    recipients = flows.recipient_names(db.session, deposit)
    flagged_by = db.session.get(User, flow.unusable_by_id) if flow.unusable_by_id else None
    return render_template(
        "flows/show.html",
        flow=flow,
        deposit=deposit,
        report=report,
        sender=db.session.get(User, deposit.sender_id),
        is_sender_side=sender_side,
        receipts=receipts,
        recipients=recipients,
        files_by_id={f.id: f for f in deposit.files},
        can_download=can_download(user, deposit),
        can_withdraw=can_withdraw(user, deposit),
        can_flag=flows.can_flag_unusable(user, flow),
        flagged_by=flagged_by,
        period_label=flows.period_label(
            FlowType(flow.flow_type) if flow.flow_type else None, flow.period_start
        ),
        departement_name=DEPARTEMENTS[flow.departement_code],
        nature_labels=flows.NATURE_LABELS,
    )


@bp.route("/flux/depots/<flow_id>/rapport.csv")
def report_csv(flow_id: str) -> Response:
    """The validation report as CSV (masked NIR, formulas neutralised)."""
    _, flow = _flow_or_404(flow_id)
    report = flows.open_report(services().settings.secret_key, flow)
    if report is None:
        abort(404)
    response = Response("\ufeff" + flows.report_csv(report), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="rapport-{flow.flow_type or "flux"}-{flow.id[:8]}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/flux/depots/<flow_id>/inexploitable", methods=["POST"])
def flag(flow_id: str) -> BaseResponse:
    """The receiving side flags a delivered flow as unusable, with a reason."""
    user, flow = _flow_or_404(flow_id)
    try:
        sent = flows.flag_unusable(
            db.session, services(), user, flow, request.form.get("reason", ""), audit_context()
        )
    except flows.FlowError as e:
        flash(str(e), "error")
    else:
        flash(
            f"Le flux est signalé comme inexploitable ; {sent} technicien(s) de l'expéditeur "
            "prévenu(s) par e-mail.",
            "success",
        )
    return redirect(url_for("flows.show", flow_id=flow_id))
