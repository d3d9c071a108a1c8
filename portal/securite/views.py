"""The security officer's workspace (role `securite`): trail, timelines, exports, alerts."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers.response import Response as BaseResponse

from audit import AuditEvent
from audit.export import iter_json_array
from audit.query import AuditFilter, Scope
from portal.accounts.models import ROLE_LABELS, User
from portal.auth.services import find_user_by_email
from portal.db import db, utcnow
from portal.deposits.models import Deposit
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation
from portal.securite import services as securite
from portal.securite.forms import (
    FAMILY_LABELS,
    OUTCOME_LABELS,
    TARGET_TYPES,
    EmptyForm,
    SearchArgs,
    action_choices,
)
from portal.securite.labels import (
    DETAIL_LABELS,
    action_label,
    detail_fields,
    iter_french_csv,
    short_user_agent,
    target_type_label,
)
from portal.securite.models import ALERT_STATUS_LABELS, AlertStatus, SecurityAlert
from portal.securite.permissions import (
    can_see_alert,
    can_see_departement,
    can_see_user_trail,
)
from portal.web import audit_context, the_user

bp = Blueprint("securite", __name__, url_prefix="/securite")

# CSV in the portal's French convention (`;`, byte-order mark, French headers), like the flows'.
EXPORT_FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv", iter_french_csv, "\ufeff"),
    "json": ("application/json", "json", iter_json_array, ""),
}
NO_MATCH = "0" * 32  # an actor id no account has: an unknown e-mail finds nothing


_NAMED_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


@bp.app_template_filter("visible")
def visible(value: str | None) -> str:
    """Control and invisible formatting characters as escapes (CR/LF, ESC, bidi overrides).

    Markup is escaped by Jinja; this makes the rest visible too, so a hostile user agent can
    neither fake a second row nor reorder what the officer reads (CVE-2021-42574).
    """
    if value is None:
        return ""
    out = []
    for ch in value:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _officer() -> tuple[User, Scope]:
    """The current user and its scope; 404 for anyone who is not a security officer."""
    user = the_user()
    scope = securite.scope_for(db.session, user)
    if scope is None:
        abort(404)  # like the account manager's pages: a role page is not there for others
    return user, scope


def _page_args(events: list[AuditEvent], limit: int = securite.PAGE_SIZE) -> dict[str, Any]:
    users, orgs = securite.names_of(db.session, events)
    next_seq = events[-1].seq if len(events) == limit else None
    return {"events": events, "user_names": users, "org_names": orgs, "next_seq": next_seq}


bp.add_app_template_filter(action_label, "action_label")
bp.add_app_template_filter(target_type_label, "target_type_label")
bp.add_app_template_filter(detail_fields, "detail_fields")
bp.add_app_template_filter(short_user_agent, "short_user_agent")


def _resolve(args: SearchArgs, scope: Scope) -> SearchArgs:
    """Replace an e-mail typed in the user field by the account id (ids only in URLs).

    An account outside the scope resolves like an unknown one: the officer of 62 cannot learn
    whether an address has an account in 59, nor its id.
    """
    if args.actor_email is None:
        return args
    user = find_user_by_email(db.session, args.actor_email)
    known = user is not None and can_see_user_trail(scope, user)
    return replace(args, actor_email=None, actor_id=user.id if user and known else NO_MATCH)


@bp.route("")
def index() -> str:
    """Chain status, alerts waiting, entry points."""
    _user, scope = _officer()
    return render_template(
        "securite/index.html",
        scope=scope,
        chain=securite.chain_status(db.session),
        last_backup=securite.last_successful_run(db.session, "backup"),
        last_drill=securite.last_successful_run(db.session, "backup-drill"),
        backup_late_before=utcnow() - securite.BACKUP_LATE_AFTER,
        new_alerts=securite.count_new_alerts(db.session, scope),
        recent=securite.visible_alerts(db.session, scope, AlertStatus.NEW, limit=5),
        departements=DEPARTEMENTS,
    )


@bp.route("/journal")
def journal() -> str | BaseResponse:
    """Search the trail of the officer's scope; every search is audited."""
    user, scope = _officer()
    args = SearchArgs.from_args(request.args, scope)
    if args.actor_email is not None:
        return redirect(url_for("securite.journal") + "?" + urlencode(_resolve(args, scope).args()))
    events = securite.search_events(
        db.session, user, scope, args.to_filter(), audit_context(), before_seq=args.before_seq
    )
    orgs = securite.organisations_in(db.session, scope)
    return render_template(
        "securite/journal.html",
        filters=args,
        scope=scope,
        organisations=orgs,
        departements=sorted(scope.departements)
        if scope.departements is not None
        else sorted(DEPARTEMENTS),
        departement_names=DEPARTEMENTS,
        actions=action_choices(),
        families=FAMILY_LABELS,
        outcomes=OUTCOME_LABELS,
        target_types=TARGET_TYPES,
        **_page_args(events),
    )


@bp.route("/journal/export.<fmt>")
def export(fmt: str) -> Response | BaseResponse:
    """The current filter's rows as CSV or JSON, streamed; the export is audited first."""
    user, scope = _officer()
    if fmt not in EXPORT_FORMATS:
        abort(404)
    args = _resolve(SearchArgs.from_args(request.args, scope), scope)
    mimetype, extension, encode, preamble = EXPORT_FORMATS[fmt]
    # The rows are read after the view has returned and its session was closed at teardown:
    # the generator keeps that session object (see `securite.stream_export`).
    session = db.session
    events = securite.start_export(session, user, scope, args.to_filter(), fmt, audit_context())

    def body() -> Iterator[str]:
        if preamble:
            yield preamble
        yield from encode(securite.stream_export(session, events))

    response = Response(stream_with_context(body()), mimetype=mimetype)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="journal-audit-{stamp}.{extension}"'
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/utilisateurs/<user_id>")
def user_timeline(user_id: str) -> str:
    """What one account did, newest first (ids and metadata only)."""
    officer, scope = _officer()
    target = db.session.get(User, user_id) if len(user_id) == 32 else None
    if target is None or not can_see_user_trail(scope, target):
        abort(404)
    before = request.args.get("avant", "")
    events = securite.search_events(
        db.session,
        officer,
        scope,
        AuditFilter(actor_id=target.id),
        audit_context(),
        before_seq=int(before) if before.isdigit() and len(before) < 19 else None,
        view="user-timeline",
    )
    return render_template(
        "securite/user.html",
        target=target,
        role_names=[ROLE_LABELS[r] for r in sorted(target.roles)],
        **_page_args(events),
    )


@bp.route("/depots/<deposit_id>")
def deposit_timeline(deposit_id: str) -> str:
    """What happened to one deposit and its files (no title, no file name)."""
    officer, scope = _officer()
    deposit = db.session.get(Deposit, deposit_id) if len(deposit_id) == 32 else None
    if deposit is None or not can_see_departement(scope, deposit.departement_code):
        abort(404)
    before = request.args.get("avant", "")
    events = securite.deposit_events(
        db.session,
        officer,
        deposit,
        audit_context(),
        before_seq=int(before) if before.isdigit() and len(before) < 19 else None,
    )
    return render_template(
        "securite/deposit.html",
        deposit=deposit,
        file_count=len(deposit.files),
        **_page_args(events),
    )


# --- alerts ----------------------------------------------------------------------------


def _alert(alert_id: str) -> tuple[User, Scope, SecurityAlert]:
    officer, scope = _officer()
    alert = db.session.get(SecurityAlert, alert_id) if len(alert_id) == 32 else None
    if alert is None or not can_see_alert(scope, alert):
        abort(404)  # another scope's alert looks exactly like an unknown one
    return officer, scope, alert


@bp.route("/alertes")
def alerts() -> str:
    """Alerts of the officer's scope, new ones first by default."""
    _user, scope = _officer()
    status = request.args.get("statut")
    status = status if status in {str(s) for s in AlertStatus} else None
    return render_template(
        "securite/alerts.html",
        alerts=securite.visible_alerts(db.session, scope, status),
        status=status,
        status_labels=ALERT_STATUS_LABELS,
    )


@bp.route("/alertes/<alert_id>")
def alert(alert_id: str) -> str:
    """One alert, its details (ids and counts only) and the acknowledgement."""
    _officer_user, scope, item = _alert(alert_id)
    try:
        details = json.loads(item.details)
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    organisation = (
        db.session.get(Organisation, item.organisation_id) if item.organisation_id else None
    )
    subject = db.session.get(User, item.subject_id) if item.subject_type == "user" else None
    return render_template(
        "securite/alert.html",
        alert=item,
        # The account by name and organisation, when the officer may read its trail.
        subject=subject if subject is not None and can_see_user_trail(scope, subject) else None,
        # Keys starting with "_" are the job's own bookkeeping (who was e-mailed), not details
        # of the detection.
        details=[
            (DETAIL_LABELS.get(k, k), v)
            for k, v in sorted(details.items())
            if not k.startswith("_")
        ],
        organisation=organisation,
        form=EmptyForm(),
    )


@bp.route("/alertes/<alert_id>/acquitter", methods=["POST"])
def acknowledge(alert_id: str) -> BaseResponse:
    """Acknowledge an alert (audited)."""
    officer, _scope, item = _alert(alert_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        securite.acknowledge(db.session, officer, item, audit_context())
    except securite.AlertError as e:
        flash(str(e), "warning")
    else:
        flash("L'alerte est acquittée.", "success")
    return redirect(url_for("securite.alert", alert_id=item.id))
