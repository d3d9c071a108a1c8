"""The incident register of the security officers (`/securite/incidents`)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from audit.query import Scope
from portal.accounts.forms import EmptyForm
from portal.accounts.models import User
from portal.container import services
from portal.db import db, is_well_formed_id, utcnow
from portal.securite import incidents
from portal.securite.incident_forms import IncidentForm, LinkForm, NoticeForm
from portal.securite.incident_models import Incident, NoticeKind
from portal.securite.models import SecurityAlert
from portal.securite.permissions import can_see_alert
from portal.securite.services import names_of, scope_for
from portal.web import audit_context, the_user

bp = Blueprint("incidents", __name__, url_prefix="/securite")
PARIS = ZoneInfo("Europe/Paris")


def _officer() -> tuple[User, Scope]:
    user = the_user()
    scope = scope_for(db.session, user)
    if scope is None:
        abort(404)
    return user, scope


def _incident(incident_id: str) -> tuple[User, Scope, Incident]:
    officer, scope = _officer()
    found = db.session.get(Incident, incident_id) if is_well_formed_id(incident_id) else None
    if found is None or not incidents.can_see_incident(scope, found):
        abort(404)  # another scope's incident looks exactly like an unknown one
    return officer, scope, found


def _paris(value: datetime) -> datetime:
    return value.replace(tzinfo=PARIS)


def _list_page(form: IncidentForm, problems: list[str]) -> str:
    _officer_user, scope = _officer()
    return render_template(
        "securite/incidents.html",
        incidents=incidents.visible_incidents(db.session, scope),
        form=form,
        problems=problems,
        now=utcnow(),
    )


@bp.route("/incidents", methods=["GET", "POST"])
def register() -> str | BaseResponse:
    """The incidents of the officer's scope, and the form to record one."""
    officer, _scope = _officer()
    form = IncidentForm()
    if not form.is_submitted():
        form.partner_notice_hours.data = services().settings.incident_partner_notice_hours
    problems: list[str] = []
    if form.validate_on_submit():
        codes = frozenset(
            c.strip().upper() for c in (form.departements.data or "").split(",") if c.strip()
        )
        try:
            incident = incidents.create_incident(
                db.session,
                officer,
                incidents.NewIncident(
                    kind=form.kind.data,
                    title=form.title.data,
                    description=form.description.data or "",
                    detected_at=_paris(form.detected_at.data),
                    departements=codes,
                    partner_notice_hours=form.partner_notice_hours.data,
                ),
                ctx=audit_context(),
                now=utcnow(),
            )
        except incidents.IncidentError as e:
            problems = [str(e)]
        else:
            flash(f"Incident n° {incident.number} enregistré.", "success")
            return redirect(url_for("incidents.detail", incident_id=incident.id))
    elif form.is_submitted():
        problems = []  # each field in error is listed by the error summary, linked to it
    return _list_page(form, problems)


def _detail_page(incident_id: str, **forms: object) -> str:
    _officer_user, scope, incident = _incident(incident_id)
    events = incidents.linked_events(db.session, scope, incident)
    users, orgs = names_of(db.session, events)
    return render_template(
        "securite/incident.html",
        incident=incident,
        events=events,
        user_names=users,
        org_names=orgs,
        organisations=incidents.organisation_names(db.session, incident.organisation_ids),
        notice_form=forms.get("notice_form") or NoticeForm(),
        link_form=forms.get("link_form") or LinkForm(),
        problems=forms.get("problems") or [],
        now=utcnow(),
        partner=incident.notified(NoticeKind.PARTNER),
        cnil=incident.notified(NoticeKind.CNIL),
    )


@bp.route("/incidents/<incident_id>")
def detail(incident_id: str) -> str:
    """One incident: deadlines, notices, linked audit rows and alerts."""
    return _detail_page(incident_id)


@bp.route("/incidents/<incident_id>/notification", methods=["POST"])
def notice(incident_id: str) -> str | BaseResponse:
    """Record when and to whom a notice went."""
    officer, _scope, incident = _incident(incident_id)
    form = NoticeForm()
    if not form.validate_on_submit():
        # Each field in error is listed by the error summary, linked to it.
        return _detail_page(incident_id, notice_form=form)
    if form.kind.data not in {str(k) for k in NoticeKind}:
        return _detail_page(incident_id, notice_form=form, problems=["Destinataire inconnu."])
    try:
        incidents.record_notice(
            db.session,
            officer,
            incident,
            NoticeKind(form.kind.data),
            sent_at=_paris(form.sent_at.data),
            recipients=form.recipients.data,
            ctx=audit_context(),
            now=utcnow(),
        )
    except incidents.IncidentError as e:
        return _detail_page(incident_id, notice_form=form, problems=[str(e)])
    flash("La notification est enregistrée.", "success")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/incidents/<incident_id>/lien", methods=["POST"])
def link(incident_id: str) -> str | BaseResponse:
    """Link an audit row of the officer's scope to the incident."""
    officer, _scope, incident = _incident(incident_id)
    form = LinkForm()
    if not form.validate_on_submit():
        # Each field in error is listed by the error summary, linked to it.
        return _detail_page(incident_id, link_form=form)
    try:
        incidents.link_event(db.session, officer, incident, form.seq.data, ctx=audit_context())
    except incidents.IncidentError as e:
        return _detail_page(incident_id, link_form=form, problems=[str(e)])
    flash("L'entrée du journal est liée à l'incident.", "success")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/incidents/<incident_id>/export.csv")
def export(incident_id: str) -> Response:
    """The incident's file for the CNIL notification (French CSV, UTF-8 with BOM)."""
    _officer_user, scope, incident = _incident(incident_id)
    events = incidents.linked_events(db.session, scope, incident)
    names = incidents.organisation_names(db.session, incident.organisation_ids)
    response = Response(
        "\ufeff" + incidents.incident_csv(incident, events, names), mimetype="text/csv"
    )
    response.headers["Content-Disposition"] = (
        f'attachment; filename="incident-{incident.number}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/alertes/<alert_id>/incident", methods=["POST"])
def from_alert(alert_id: str) -> BaseResponse:
    """Turn an alert into an incident in one step (its audit rows stay linked)."""
    officer, scope = _officer()
    alert = db.session.get(SecurityAlert, alert_id) if is_well_formed_id(alert_id) else None
    if alert is None or not can_see_alert(scope, alert) or not EmptyForm().validate_on_submit():
        abort(404)
    incident = incidents.incident_from_alert(
        db.session,
        officer,
        alert,
        partner_notice_hours=services().settings.incident_partner_notice_hours,
        ctx=audit_context(),
        now=utcnow(),
    )
    flash(f"Incident n° {incident.number} ouvert à partir de l'alerte.", "success")
    return redirect(url_for("incidents.detail", incident_id=incident.id))
