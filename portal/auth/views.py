"""HTTP side of log-in, log-out, activation, TOTP enrolment and password reset."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response

from portal.accounts.models import AccountStatus, TokenPurpose, User, UserToken
from portal.auth import keys, notices, proconnect, totp
from portal.auth import services as auth
from portal.auth.forms import (
    ForgotPasswordForm,
    LoginForm,
    NewPasswordForm,
    PasswordThenTotpForm,
    SecondFactorForm,
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
log = logging.getLogger("portal")

GENERIC_LOGIN_ERROR = "Adresse électronique, mot de passe ou code incorrect."
# Server-session keys of the ProConnect log-in (portal.auth.proconnect).
PROCONNECT_REQUEST = "proconnect_request"  # state, nonce, PKCE verifier: until the callback
PROCONNECT_LINK = "proconnect_link"  # an identity to link after a password log-in
PROCONNECT_MFA = "proconnect_mfa"  # an identity waiting for the local second factor
PROCONNECT_SESSION = "proconnect"  # a session opened through ProConnect: the sealed ID token
PROCONNECT_LOGOUT = "proconnect_logout"  # the state of the provider's end of session
PROCONNECT_UNAVAILABLE = (
    "ProConnect est momentanément indisponible. Réessayez plus tard, ou connectez-vous avec "
    "votre adresse électronique, votre mot de passe et votre second facteur."
)
KEY_LOGIN_ERROR = (
    "La clé de sécurité n'a pas été acceptée. Réessayez, ou connectez-vous avec le code de "
    "votre application d'authentification."
)


@bp.context_processor
def _proconnect_offered() -> dict[str, Any]:
    return {"proconnect": proconnect.available(services().settings)}


@bp.route("/connexion", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """Password and TOTP in one form: one answer for every kind of failure."""
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template(
                "auth/login.html", form=form, error=GENERIC_LOGIN_ERROR, next_url=next_url
            ), 200
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
            return render_template(
                "auth/login.html", form=form, error=error, next_url=next_url
            ), 429
        if outcome.key_user_id is not None:
            portal_session()["key_login"] = {
                "user_id": outcome.key_user_id,
                "next": next_url,
                "since": int(time.time()),
            }
            return redirect(url_for("auth.login_key"))
        if outcome.user is None:
            return render_template(
                "auth/login.html", form=form, error=GENERIC_LOGIN_ERROR, next_url=next_url
            ), 200
        return _logged_in(outcome.user, next_url)
    return render_template("auth/login.html", form=form, error=None, next_url=next_url)


def _logged_in(
    user: User, next_url: str, *, provider_session: dict[str, Any] | None = None
) -> Response:
    """Open the session, then apply the key policy (`FILR_WEBAUTHN_REQUIRED_ROLES`).

    A ProConnect identity waiting in this browser for its first password log-in is linked
    now, when it names this very account (`proconnect.link`).
    """
    sess = portal_session()
    pending_link = sess.get(PROCONNECT_LINK)
    linked = False
    if provider_session is None and pending_link is not None:
        linked = proconnect.link(db.session, user, pending_link, audit_context())
        if linked:
            provider_session = {"id_token": pending_link["id_token"]}
    sess.authenticate(user.id)
    if provider_session is not None:
        sess[PROCONNECT_SESSION] = {"id_token": provider_session.get("id_token")}
    if linked:
        flash(
            "Votre compte est désormais relié à votre identité ProConnect : la prochaine fois, "
            "le bouton « S’identifier avec ProConnect » suffit.",
            "success",
        )
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
        provider_session = state.get("proconnect") if state else None
        done = _logged_in(
            user,
            safe_next(state.get("next") if state else None),
            provider_session=provider_session if isinstance(provider_session, dict) else None,
        )
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
    """End the session server-side; the old cookie is worthless afterwards. A session opened
    through ProConnect then ends the provider's too (its `end_session_endpoint`, whose origin
    the CSP's form-action allows: `portal.gate.csp_for`)."""
    user = the_user()
    sess = portal_session()
    provider = proconnect.end_session(services(), sess.get(PROCONNECT_SESSION), user.id)
    auth.log_out(db.session, user, audit_context(), via_provider=provider is not None)
    sess.destroy()
    if provider is not None:
        sess[PROCONNECT_LOGOUT] = provider.state
        return redirect(provider.url)
    flash("Vous êtes déconnecté(e).", "info")
    return redirect(url_for("auth.login"))


def _proconnect_error(title: str, message: str, status: int) -> tuple[str, int]:
    return (
        render_template(
            "auth/proconnect_error.html",
            title=title,
            message=message,
            request_id=g.get("request_id"),
        ),
        status,
    )


def _unavailable() -> tuple[str, int]:
    return _proconnect_error("ProConnect indisponible", PROCONNECT_UNAVAILABLE, 503)


@bp.route("/connexion/proconnect")
def proconnect_start() -> Response | tuple[str, int]:
    """Send the browser to ProConnect (state, nonce and PKCE wait in the server session)."""
    settings = services().settings
    if not proconnect.available(settings):
        abort(404)
    try:
        started = proconnect.start(settings, safe_next(request.args.get("next")))
    except proconnect.ProviderUnavailable as e:
        proconnect.record_refusal(db.session, "provider_unavailable", audit_context())
        log.warning("ProConnect unavailable at the start of a log-in: %s", e)
        return _unavailable()
    portal_session()[PROCONNECT_REQUEST] = started.pending
    return redirect(started.url)


@bp.route(proconnect.CALLBACK_PATH)
def proconnect_callback() -> Response | tuple[str, int]:
    """The provider's answer: check it, find the existing account, then the second factor."""
    svc = services()
    if not proconnect.available(svc.settings):
        abort(404)
    sess = portal_session()
    pending = sess.pop(PROCONNECT_REQUEST, None)
    try:
        identity = proconnect.finish(svc.settings, pending, request.args.to_dict())
    except proconnect.ProviderUnavailable as e:
        proconnect.record_refusal(db.session, "provider_unavailable", audit_context())
        log.warning("ProConnect unavailable during a log-in: %s", e)
        return _unavailable()
    except proconnect.Refused as e:
        proconnect.record_refusal(db.session, e.reason, audit_context())
        return _proconnect_error(
            "Connexion avec ProConnect impossible",
            "La connexion avec ProConnect n'a pas abouti (réponse expirée, interrompue ou non "
            "conforme). Recommencez depuis la page de connexion.",
            400,
        )
    resolution = proconnect.resolve(db.session, identity, audit_context())
    if resolution is None:
        return _proconnect_error(
            "Aucun compte Fil'R pour cette identité",
            "ProConnect vous a bien identifié(e), mais aucun compte actif de Fil'R ne vous "
            "correspond, ou votre organisation n'a pas ouvert la connexion par ProConnect. Les "
            "comptes sont créés par le gestionnaire de comptes de votre organisation : "
            "adressez-vous à lui.",
            403,
        )
    next_url = safe_next(pending.get("next") if isinstance(pending, dict) else None)
    user = resolution.user
    waiting = proconnect.pending_login(svc, identity, user, next_url)
    if not resolution.linked:
        sess[PROCONNECT_LINK] = waiting
        flash(
            "Première connexion avec ProConnect : connectez-vous une fois avec votre adresse "
            "électronique, votre mot de passe et votre second facteur. Votre compte sera alors "
            "relié à votre identité ProConnect.",
            "info",
        )
        return redirect(url_for("auth.login", next=next_url if next_url != "/" else None))
    if proconnect.provider_mfa_accepted(db.session, svc.settings, user, identity):
        done = proconnect.log_in_with_provider_mfa(db.session, svc, user, waiting, audit_context())
        return _logged_in(done, next_url, provider_session={"id_token": waiting["id_token"]})
    if keys.available(svc.settings) and keys.has_keys(db.session, user.id):
        sess["key_login"] = {
            "user_id": user.id,
            "next": next_url,
            "since": int(time.time()),
            "provider": proconnect.PROVIDER_NAME,
            "proconnect": {"id_token": waiting["id_token"]},
        }
        return redirect(url_for("auth.login_key"))
    sess[PROCONNECT_MFA] = waiting
    return redirect(url_for("auth.proconnect_code"))


@bp.route("/connexion/proconnect/code", methods=["GET", "POST"])
def proconnect_code() -> str | Response | tuple[str, int]:
    """The local second factor when ProConnect asserted none."""
    sess = portal_session()
    pending = proconnect.fresh_pending(sess.get(PROCONNECT_MFA))
    if pending is None:
        sess.pop(PROCONNECT_MFA, None)
        flash("La connexion a expiré : recommencez.", "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    error = None
    if form.validate_on_submit():
        outcome = proconnect.log_in_with_local_code(
            db.session, services(), pending, form.code.data, audit_context()
        )
        if outcome.stale:
            sess.pop(PROCONNECT_MFA, None)
            flash("La connexion a expiré : recommencez.", "info")
            return redirect(url_for("auth.login"))
        if outcome.retry_after is not None:
            minutes = max(1, (outcome.retry_after + 59) // 60)
            error = (
                "Trop de tentatives. Par sécurité, réessayez dans "
                f"{minutes} minute{'s' if minutes > 1 else ''}."
            )
            return render_template("auth/proconnect_code.html", form=form, error=error), 429
        if outcome.user is not None:
            return _logged_in(
                outcome.user,
                safe_next(pending.get("next")),
                provider_session={"id_token": pending["id_token"]},
            )
        error = "Code incorrect."
    return render_template("auth/proconnect_code.html", form=form, error=error)


@bp.route(proconnect.POST_LOGOUT_PATH)
def proconnect_logged_out() -> Response:
    """Back from the provider's end of session: its `state` must be the one sent."""
    expected = portal_session().pop(PROCONNECT_LOGOUT, None)
    got = request.args.get("state") or ""
    if isinstance(expected, str) and hmac.compare_digest(expected.encode(), got.encode()):
        flash("Vous êtes déconnecté(e) de Fil'R et de ProConnect.", "info")
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
