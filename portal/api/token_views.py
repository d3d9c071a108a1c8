"""Mon compte → Jetons d'accès à l'API: list, create (the secret is shown once), revoke.

The API feature's web pages (session and CSRF), apart from its REST API in `views.py`.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers.response import Response

from portal.accounts.forms import EmptyForm
from portal.api import services as tokens
from portal.api.forms import CreateTokenForm
from portal.api.models import MAX_TOKEN_LIFETIME, SCOPE_LABELS
from portal.container import services
from portal.db import db
from portal.web import audit_context, password_problems_of_reauth, the_user

bp = Blueprint("api_tokens", __name__)


def _page(form: CreateTokenForm, problems: list[str] | None = None) -> str:
    return render_template(
        "api/tokens.html",
        tokens=tokens.tokens_of(db.session, the_user()),
        form=form,
        empty_form=EmptyForm(),
        problems=problems or [],
        scope_labels=SCOPE_LABELS,
        max_days=MAX_TOKEN_LIFETIME.days,
    )


@bp.get("/compte/jetons")
def index() -> str:
    """My tokens, and the form to create one."""
    return _page(CreateTokenForm())


@bp.post("/compte/jetons")
def create() -> str:
    """Create a token after re-authentication; its secret is on this response only."""
    user, svc = the_user(), services()
    form = CreateTokenForm()
    if not form.validate_on_submit():
        problems = [
            f"{form[name].label.text} : {errors[0]}" for name, errors in form.errors.items()
        ]
        return _page(form, problems)
    problems = password_problems_of_reauth(form.current.data, "api_token")
    if problems:
        return _page(form, problems)
    try:
        token, secret = tokens.create_token_and_mail(
            db.session,
            svc.mailer,
            user,
            name=form.name.data,
            scopes=form.scopes.data,
            lifetime_days=form.lifetime_days.data,
            ctx=audit_context(),
            mail_body=lambda token: render_template("api/token_created_mail.txt", token=token),
        )
    except tokens.TokenError as e:
        return _page(form, [str(e)])
    # Rendered, not redirected: the secret never travels in a URL nor sits in the session.
    return render_template(
        "api/token_created.html", token=token, secret=secret, scope_labels=SCOPE_LABELS
    )


@bp.post("/compte/jetons/<token_id>/revoquer")
def revoke(token_id: str) -> Response:
    """Revoke one of my tokens: it stops working at once."""
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    if not tokens.revoke_own_token(db.session, the_user(), token_id, audit_context()):
        abort(404)  # another user's token looks exactly like an unknown one
    flash("Le jeton a été révoqué : il ne permet plus d'accéder à l'API.", "success")
    return redirect(url_for("api_tokens.index"))
