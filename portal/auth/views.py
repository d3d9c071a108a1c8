"""HTTP side of log-in, log-out, activation, TOTP enrolment and password reset."""

from __future__ import annotations

import time
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response

from portal.accounts.models import AccountStatus, TokenPurpose, User, UserToken
from portal.auth import keys, notices, totp
from portal.auth import services as auth
from portal.auth.forms import (
    ForgotPasswordForm,
    LoginForm,
    NewPasswordForm,
    PasswordThenTotpForm,
    TotpConfirmForm,
)
from portal.container import services
from portal.db import db, utcnow
from portal.web import (
    KEY_ENROLMENT_ONLY,
    audit_context,
    portal_session,
    safe_next,
    the_user,
)

bp = Blueprint("auth", __name__)

GENERIC_LOGIN_ERROR = "Adresse électronique, mot de passe ou code incorrect."
KEY_LOGIN_ERROR = (
    "La clé de sécurité n'a pas été acceptée. Réessayez, ou connectez-vous avec le code de "
    "votre application d'authentification."
)


@bp.route("/connexion", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """Password and TOTP in one form: one answer for every kind of failure."""
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("auth/login.html", form=form, error=GENERIC_LOGIN_ERROR), 200
        outcome = auth.attempt_login(
            db.session,
            services(),
            form.email.data,
            form.password.data,
            form.code.data,
            audit_context(),
        )
        if outcome.retry_after is not None:
            minutes = max(1, (outcome.retry_after + 59) // 60)
            error = (
                "Trop de tentatives de connexion. Par sécurité, réessayez dans "
                f"{minutes} minute{'s' if minutes > 1 else ''}."
            )
            return render_template("auth/login.html", form=form, error=error), 429
        if outcome.key_user_id is not None:
            portal_session()["key_login"] = {
                "user_id": outcome.key_user_id,
                "next": next_url,
                "since": int(time.time()),
            }
            return redirect(url_for("auth.login_key"))
        if outcome.user is None:
            return render_template("auth/login.html", form=form, error=GENERIC_LOGIN_ERROR), 200
        return _logged_in(outcome.user, next_url)
    return render_template("auth/login.html", form=form, error=None)


def _logged_in(user: User, next_url: str) -> Response:
    """Open the session, then apply the key policy (`FILR_WEBAUTHN_REQUIRED_ROLES`)."""
    sess = portal_session()
    sess.authenticate(user.id)
    policy = keys.key_policy(db.session, services().settings, user, utcnow().date())
    if policy is keys.KeyPolicy.FREE:
        return redirect(next_url)
    keys.record_key_required(db.session, user, policy, audit_context())
    if policy is keys.KeyPolicy.ENROL_NOW:
        sess[KEY_ENROLMENT_ONLY] = True
    return redirect(url_for("accounts.key_required"))


def _key_login_state() -> dict[str, Any] | None:
    """The pending key log-in of this browser, while its password step is fresh."""
    state = portal_session().get("key_login")
    if not isinstance(state, dict) or not isinstance(state.get("since"), int):
        return None
    if not 0 <= time.time() - state["since"] <= keys.CHALLENGE_LIFETIME_SECONDS:
        return None
    return state


@bp.route("/connexion/cle", methods=["GET", "POST"])
def login_key() -> str | Response | tuple[Response, int]:
    """Second step with a security key: the page asks the browser (static/keys.js), which
    posts the assertion back here as JSON."""
    sess = portal_session()
    state = _key_login_state()
    if request.method == "POST":
        user = None
        if state is not None:
            # One answer per challenge: a retry asks the page again for a fresh one.
            sess["key_login"] = {k: v for k, v in state.items() if k != "challenge"}
            user = keys.log_in_with_key(
                db.session, services(), state, request.get_data(as_text=True), audit_context()
            )
        if user is None:
            return jsonify(error=KEY_LOGIN_ERROR), 400
        done = _logged_in(user, safe_next(state.get("next") if state else None))
        return jsonify(redirect=done.location)
    if state is None:
        sess.pop("key_login", None)
        flash("La connexion a expiré : saisissez de nouveau vos identifiants.", "info")
        return redirect(url_for("auth.login"))
    ceremony = keys.authentication_ceremony(db.session, services().settings, state["user_id"])
    sess["key_login"] = {**state, **ceremony.pending}
    return render_template("auth/login_key.html", options_json=ceremony.options_json)


@bp.route("/deconnexion", methods=["POST"])
def logout() -> Response:
    """End the session server-side; the old cookie is worthless afterwards."""
    auth.log_out(db.session, the_user(), audit_context())
    portal_session().destroy()
    flash("Vous êtes déconnecté(e).", "info")
    return redirect(url_for("auth.login"))


@bp.route("/mot-de-passe/oubli", methods=["GET", "POST"])
def forgot_password() -> str | Response:
    """Send a reset link if the account exists; the answer is the same either way."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        svc = services()

        def mail_body(raw: str) -> str:
            link = svc.settings.base_url + url_for("auth.reset_password", token=raw)
            return render_template("mails/password_reset.txt", link=link)

        # The same answer whether the account exists or not, even when the mail fails.
        auth.send_password_reset(
            db.session, svc, form.email.data, audit_context(), mail_body=mail_body
        )
        flash(
            "Si un compte actif correspond à cette adresse, un lien de réinitialisation valable "
            "30 minutes vient d'y être envoyé.",
            "info",
        )
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form)


def _swept(done: auth.PasswordReset) -> tuple[str, str]:
    """What a password reset swept away, told to the person (page and mail)."""
    return (
        notices.api_tokens_revoked_for_owner(done.api_tokens_revoked),
        notices.MFA_ENROLMENT_LINK_VOIDED if done.mfa_enrolment_voided else "",
    )


def _token_or_404(raw: str, purpose: TokenPurpose) -> tuple[Any, User]:
    token = auth.find_token(db.session, raw, purpose)
    if token is None:
        abort(404)
    user = db.session.get(User, token.user_id)
    if user is None:
        abort(404)
    return token, user


@bp.route("/mot-de-passe/reinitialiser/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> str | Response:
    """Choose a new password from an e-mailed link; MFA stays, the rest is swept (see
    `complete_password_reset`) and the page and mail say what was."""
    row, user = _token_or_404(token, TokenPurpose.PASSWORD_RESET)
    if user.status != AccountStatus.ACTIVE:
        abort(404)
    form = NewPasswordForm()
    problems: list[str] = []
    if form.validate_on_submit():
        problems = auth.check_new_password(user, form.password.data, form.confirmation.data)
        done = None
        if not problems:
            done = auth.reset_password(
                db.session,
                services(),
                user,
                row,
                form.password.data,
                audit_context(),
                mail_body=lambda done: render_template(
                    "mails/password_changed.txt", notices=_swept(done)
                ),
            )
        if done is not None:
            swept = _swept(done)
            next_step = "" if done.mfa_enrolment_voided else "Connectez-vous avec votre code."
            message = ["Votre mot de passe a été modifié.", next_step, *swept]
            flash(" ".join(m for m in message if m), "success")
            return redirect(url_for("auth.login"))
    return render_template(
        "auth/new_password.html",
        form=form,
        problems=problems,
        user=user,
        min_length=auth.min_password_length(user),
        title="Choisir un nouveau mot de passe",
    )


@bp.route("/activation/<token>", methods=["GET", "POST"])
def activate(token: str) -> str | Response:
    """First step of activation: choose a password."""
    row, user = _token_or_404(token, TokenPurpose.ACTIVATION)
    if user.status != AccountStatus.PENDING:
        abort(404)
    form = NewPasswordForm()
    problems: list[str] = []
    if form.validate_on_submit():
        problems = auth.check_new_password(user, form.password.data, form.confirmation.data)
        if not problems:
            auth.set_activation_password(db.session, services(), user, form.password.data)
            portal_session()["enrol"] = {
                "user_id": user.id,
                "token_id": row.id,
                "secret": auth.new_pending_totp_secret(services(), user.id)[1],
            }
            return redirect(url_for("auth.activate_totp"))
    return render_template(
        "auth/new_password.html",
        form=form,
        problems=problems,
        user=user,
        min_length=auth.min_password_length(user),
        title="Activer votre compte",
        activation=True,
    )


@bp.route("/mfa/enrolement/<token>", methods=["GET", "POST"])
def mfa_enrol(token: str) -> str | Response | tuple[str, int]:
    """After an MFA reset: prove the password, then enrol a new authenticator."""
    row, user = _token_or_404(token, TokenPurpose.MFA_ENROLMENT)
    if user.status != AccountStatus.ACTIVE:
        abort(404)
    form = PasswordThenTotpForm()
    error = None
    if form.validate_on_submit():
        # Whoever holds the link must not get an unthrottled password oracle: the check counts
        # against the account's re-authentication key and every failure is audited.
        result = auth.reauthenticate_for_enrolment(
            db.session, services(), user, form.password.data, audit_context()
        )
        if result.ok:
            portal_session()["enrol"] = {
                "user_id": user.id,
                "token_id": row.id,
                "secret": auth.new_pending_totp_secret(services(), user.id)[1],
            }
            return redirect(url_for("auth.activate_totp"))
        if result.retry_after is not None:
            error = (
                "Trop de tentatives avec un mot de passe incorrect. "
                f"Réessayez dans {result.retry_after} secondes."
            )
            return render_template("auth/mfa_enrol.html", form=form, error=error), 429
        error = "Mot de passe incorrect."
    return render_template("auth/mfa_enrol.html", form=form, error=error)


@bp.route("/activation/authentification", methods=["GET", "POST"])
def activate_totp() -> str | Response:
    """Second step: scan the QR code and confirm a code; recovery codes are shown once."""
    sess = portal_session()
    state = sess.get("enrol")
    if not isinstance(state, dict):
        abort(404)
    user = db.session.get(User, state.get("user_id"))
    token = db.session.get(UserToken, state.get("token_id"))
    svc = services()
    secret = auth.open_pending_totp_secret(svc, state.get("secret"), user.id) if user else None
    if (
        user is None
        or secret is None
        or token is None
        or token.used_at is not None
        or token.expires_at <= utcnow()
    ):
        sess.pop("enrol", None)
        abort(404)
    uri = totp.provisioning_uri(secret, user.email)
    form = TotpConfirmForm()
    error = None
    if form.validate_on_submit():
        codes = auth.complete_enrolment(
            db.session, svc, user, secret, form.code.data, token, audit_context()
        )
        if codes is not None:
            sess.authenticate(user.id)
            return render_template("auth/recovery_codes.html", codes=codes, first=True)
        error = "Code incorrect : vérifiez l'heure de votre téléphone et saisissez le code affiché."
    return render_template(
        "auth/totp_enrol.html",
        form=form,
        error=error,
        qr_svg=totp.qr_svg(uri),
        secret=secret,
    )
