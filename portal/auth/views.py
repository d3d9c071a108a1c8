"""HTTP side of log-in, log-out, activation, TOTP enrolment and password reset."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, TokenPurpose, User, UserToken
from portal.auth import notices, totp
from portal.auth import services as auth
from portal.auth.forms import (
    ForgotPasswordForm,
    LoginForm,
    NewPasswordForm,
    PasswordThenTotpForm,
    TotpConfirmForm,
)
from portal.auth.sessions import revoke_user_sessions
from portal.container import services
from portal.db import db, utcnow
from portal.mail import deliver
from portal.web import actor_of, audit_context, portal_session, safe_next, the_user

bp = Blueprint("auth", __name__)

GENERIC_LOGIN_ERROR = "Adresse électronique, mot de passe ou code incorrect."


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
        if outcome.user is None:
            return render_template("auth/login.html", form=form, error=GENERIC_LOGIN_ERROR), 200
        portal_session().authenticate(outcome.user.id)
        return redirect(next_url)
    return render_template("auth/login.html", form=form, error=None)


@bp.route("/deconnexion", methods=["POST"])
def logout() -> Response:
    """End the session server-side; the old cookie is worthless afterwards."""
    user = the_user()
    audit.record(db.session, AuditAction.AUTH_LOGOUT, actor=actor_of(user), context=audit_context())
    db.session.commit()
    portal_session().destroy()
    flash("Vous êtes déconnecté(e).", "info")
    return redirect(url_for("auth.login"))


@bp.route("/mot-de-passe/oubli", methods=["GET", "POST"])
def forgot_password() -> str | Response:
    """Send a reset link if the account exists; the answer is the same either way."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        svc = services()
        user = auth.find_user_by_email(db.session, form.email.data)
        if user is not None and user.status == AccountStatus.ACTIVE:
            raw = auth.issue_token(db.session, user, TokenPurpose.PASSWORD_RESET)
            audit.record(
                db.session,
                AuditAction.AUTH_PASSWORD_RESET_REQUESTED,
                actor=actor_of(user),
                context=audit_context(),
            )
            db.session.commit()
            link = svc.settings.base_url + url_for("auth.reset_password", token=raw)
            # A mail outage must not answer differently from an unknown address (a 500 would
            # tell that the account exists): the failure is logged by id and audited, and the
            # person sees the usual answer.
            if not deliver(
                svc.mailer,
                user.email,
                "Fil'R : réinitialisation de votre mot de passe",
                render_template("mails/password_reset.txt", link=link),
                what="password reset mail",
                about=f"user {user.id}",
            ):
                audit.record(
                    db.session,
                    AuditAction.AUTH_PASSWORD_RESET_REQUESTED,
                    actor=actor_of(user),
                    context=audit_context(),
                    outcome=Outcome.FAILURE,
                    details={"error": "mail"},
                )
                db.session.commit()
        flash(
            "Si un compte actif correspond à cette adresse, un lien de réinitialisation valable "
            "30 minutes vient d'y être envoyé.",
            "info",
        )
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form)


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
        if not problems and auth.consume_token(db.session, row):
            done = auth.complete_password_reset(
                db.session, services(), user, form.password.data, audit_context()
            )
            db.session.commit()
            swept = (
                notices.api_tokens_revoked_for_owner(done.api_tokens_revoked),
                notices.MFA_ENROLMENT_LINK_VOIDED if done.mfa_enrolment_voided else "",
            )
            services().mailer.send(
                user.email,
                "Fil'R : votre mot de passe a été modifié",
                render_template("mails/password_changed.txt", notices=swept),
            )
            next_step = "" if done.mfa_enrolment_voided else "Connectez-vous avec votre code."
            message = ["Votre mot de passe a été modifié.", next_step, *swept]
            flash(" ".join(m for m in message if m), "success")
            return redirect(url_for("auth.login"))
    return render_template(
        "auth/new_password.html",
        form=form,
        problems=problems,
        user=user,
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
            auth.set_password(db.session, services(), user, form.password.data)
            db.session.commit()
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
        result = auth.reauthenticate(
            db.session, services(), user, form.password.data, audit_context(), "mfa_enrolment_link"
        )
        db.session.commit()  # failures and their audit rows outlive this page
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
        if auth.enrol_totp(db.session, svc, user, secret, form.code.data) and auth.consume_token(
            db.session, token
        ):
            first_activation = user.status == AccountStatus.PENDING
            if first_activation:
                user.status = AccountStatus.ACTIVE
                user.activated_at = utcnow()
            codes = auth.replace_recovery_codes(db.session, user)
            revoke_user_sessions(db.session, user.id)
            ctx, actor = audit_context(), actor_of(user)
            audit.record(db.session, AuditAction.AUTH_MFA_ENROLLED, actor=actor, context=ctx)
            if first_activation:
                audit.record(db.session, AuditAction.ACCOUNT_ACTIVATED, actor=actor, context=ctx)
            audit.record(
                db.session,
                AuditAction.AUTH_LOGIN_SUCCESS,
                actor=actor,
                context=ctx,
                details={"via": "enrolment"},
            )
            db.session.commit()
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
