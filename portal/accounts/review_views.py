"""The annual review of habilitations: the account manager's page and the national view."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response as BaseResponse

from portal.accounts import review
from portal.accounts.forms import EmptyForm
from portal.accounts.models import ReviewCampaign, ReviewDecisionKind, User
from portal.accounts.permissions import (
    can_manage_accounts,
    can_open_review,
    can_see_national_review,
)
from portal.container import services
from portal.db import db, is_well_formed_id, utcnow
from portal.orgs.models import Organisation
from portal.web import actor_of, audit_context, the_user

bp = Blueprint("review", __name__)

_DECISIONS = {
    "confirmer": (ReviewDecisionKind.CONFIRMED, "confirmé"),
    "suspendre": (ReviewDecisionKind.SUSPENDED, "suspendu"),
}


def _manager() -> User:
    user = the_user()
    if not can_manage_accounts(user):
        abort(404)
    return user


@bp.route("/gestion/revue")
def manage_review() -> str:
    """The open campaign of the manager's organisation: every account, to confirm or suspend."""
    manager = _manager()
    campaign = review.open_campaign_of(db.session, manager.organisation_id)
    rows = review.review_rows(db.session, campaign) if campaign else []
    return render_template(
        "accounts/review.html",
        campaign=campaign,
        rows=rows,
        undecided=sum(1 for r in rows if r.decision is None),
        me=manager,
        # After a decision, keyboard focus goes to the next account waiting for one.
        focus_next=request.args.get("suite") == "1",
    )


@bp.route("/gestion/revue/<campaign_id>/<user_id>/<decision>", methods=["POST"])
def decide(campaign_id: str, user_id: str, decision: str) -> BaseResponse:
    """Confirm or suspend one account of the organisation in the open campaign."""
    manager = _manager()
    if decision not in _DECISIONS or not EmptyForm().validate_on_submit():
        abort(404)
    campaign = (
        db.session.get(ReviewCampaign, campaign_id) if is_well_formed_id(campaign_id) else None
    )
    target = db.session.get(User, user_id) if is_well_formed_id(user_id) else None
    if (
        campaign is None
        or target is None
        or campaign.organisation_id != manager.organisation_id
        or target.organisation_id != manager.organisation_id
    ):
        abort(404)  # another organisation's campaign or account looks like an unknown one
    kind, done = _DECISIONS[decision]
    try:
        review.decide(db.session, campaign, target, kind, manager=manager, ctx=audit_context())
    except review.ReviewError as e:
        flash(str(e), "error")
    else:
        flash(f"Le compte de {target.full_name} est {done}.", "success")
    return redirect(url_for("review.manage_review", suite="1"))


def _national() -> User:
    user = the_user()
    if not can_see_national_review(user):
        abort(404)
    return user


@bp.route("/revue-des-habilitations")
def national() -> str:
    """Progress of every organisation's latest campaign."""
    user = _national()
    return render_template(
        "accounts/review_national.html",
        rows=review.national_progress(db.session),
        can_open=can_open_review(user),
        form=EmptyForm(),
    )


@bp.route("/revue-des-habilitations.csv")
def national_csv() -> Response:
    """The national view as a French CSV (`;`, UTF-8 with BOM)."""
    _national()
    body = "\ufeff" + review.progress_csv(review.national_progress(db.session))
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="revue-des-habilitations.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/revue-des-habilitations/<org_id>/ouvrir", methods=["POST"])
def open_by_hand(org_id: str) -> BaseResponse:
    """Open a campaign now for one organisation (after an incident): the platform operator."""
    user = _national()
    if not can_open_review(user) or not EmptyForm().validate_on_submit():
        abort(404)
    org = db.session.get(Organisation, org_id) if is_well_formed_id(org_id) else None
    if org is None:
        abort(404)
    try:
        campaign = review.open_campaign_by_hand(
            db.session, services(), org, actor=actor_of(user), ctx=audit_context(), now=utcnow()
        )
    except review.ReviewError as e:
        flash(str(e), "error")
    else:
        flash(
            f"Revue ouverte pour {org.name} jusqu'au {campaign.closes_on:%d/%m/%Y} ; ses "
            "gestionnaires de comptes ont été prévenus.",
            "success",
        )
    return redirect(url_for("review.national"))
