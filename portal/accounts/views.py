"""Mon compte (every user) and the account manager's workspace (gestionnaire)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response
from werkzeug.wrappers.response import Response as WerkzeugResponse

from portal.accounts import departure, habilitations
from portal.accounts import services as accounts
from portal.accounts.forms import (
    ChangePasswordForm,
    ConfirmPasswordForm,
    CreateAccountForm,
    DepartureForm,
    EmptyForm,
    EnrolKeyForm,
    HabilitationForm,
    ReenrolTotpForm,
)
from portal.accounts.models import ROLE_LABELS, SUSPENSION_LABELS, Role, SuspensionReason, User
from portal.accounts.permissions import can_manage_account, can_manage_accounts, roles_allowed_for
from portal.auth import keys, notices, proconnect, totp
from portal.auth import services as auth
from portal.auth.models import ServerSession
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.antivirus import Antivirus
from portal.orgs.models import OrgKind
from portal.orgs.permissions import spaces_of
from portal.web import (
    KEY_ENROLMENT_ONLY,
    actor_of,
    audit_context,
    password_problems_of_reauth,
    portal_session,
    the_user,
)

bp = Blueprint("accounts", __name__)
FORM_LIMIT = habilitations.FORM_MAX_BYTES


def _my_sessions(user: User) -> list[ServerSession]:
    return list(
        db.session.execute(
            sa.select(ServerSession)
            .where(ServerSession.user_id == user.id)
            .order_by(ServerSession.last_seen_at.desc())
        ).scalars()
    )


def _account_page(**forms: object) -> str:
    user = the_user()
    sess = portal_session()
    return render_template(
        "accounts/my_account.html",
        user=user,
        spaces=sorted(spaces_of(user)),
        sessions=_my_sessions(user),
        current_session_id=sess.row_id,
        recovery_left=auth.remaining_recovery_codes(db.session, user),
        password_form=forms.get("password_form") or ChangePasswordForm(),
        codes_form=forms.get("codes_form") or ConfirmPasswordForm(),
        empty_form=EmptyForm(),
        problems=forms.get("problems") or [],
        **_habilitation_view(user),
        webauthn_enabled=keys.available(services().settings),
        proconnect_offered=proconnect.available(services().settings)
        and user.organisation.proconnect_enabled,
        proconnect_link=proconnect.link_of(db.session, user.id),
    )


@bp.route("/compte")
def my_account() -> str:
    """Profile, password, second factor, recovery codes and active sessions."""
    return _account_page()


@bp.route("/compte/proconnect/detacher", methods=["POST"])
def unlink_proconnect() -> Response:
    """Detach the account from its ProConnect identity (linked again after a password log-in)."""
    if EmptyForm().validate_on_submit() and proconnect.unlink(
        db.session, the_user(), audit_context()
    ):
        flash(
            "Votre compte n'est plus relié à ProConnect. Pour l'utiliser de nouveau, "
            "connectez-vous une fois avec votre mot de passe après ProConnect.",
            "success",
        )
    return redirect(url_for("accounts.my_account"))


@bp.route("/compte/mot-de-passe", methods=["POST"])
def change_password() -> str | Response:
    """Change the password; every other session of the account ends."""
    user, svc = the_user(), services()
    form = ChangePasswordForm()
    problems: list[str] = []
    if form.validate_on_submit():
        problems = password_problems_of_reauth(form.current.data, "password_change")
        if not problems:
            problems = auth.check_new_password(user, form.password.data, form.confirmation.data)
        if not problems:
            accounts.change_password(
                db.session,
                svc,
                user,
                form.password.data,
                keep_session_id=portal_session().row_id,
                ctx=audit_context(),
                mail_body=render_template("mails/password_changed.txt"),
                on_committed=lambda: portal_session().authenticate(user.id),  # new session id
            )
            flash(
                "Votre mot de passe a été modifié. Vos autres sessions ont été fermées.", "success"
            )
            return redirect(url_for("accounts.my_account"))
    else:
        problems = ["Renseignez les trois champs."]
    return _account_page(password_form=form, problems=problems)


@bp.route("/compte/codes-de-secours", methods=["POST"])
def regenerate_recovery_codes() -> str | Response:
    """Ten new recovery codes, shown once; the old ones stop working."""
    user = the_user()
    form = ConfirmPasswordForm()
    if not form.validate_on_submit():
        return _account_page(codes_form=form, problems=["Saisissez votre mot de passe actuel."])
    problems = password_problems_of_reauth(form.current.data, "recovery_codes")
    if not problems:
        codes = accounts.regenerate_recovery_codes(db.session, user, audit_context())
        return render_template("auth/recovery_codes.html", codes=codes, first=False)
    return _account_page(codes_form=form, problems=problems)


@bp.route("/compte/authentification", methods=["GET", "POST"])
def reenrol_totp() -> str | Response:
    """Move the second factor to a new authenticator app."""
    user, svc = the_user(), services()
    sess = portal_session()
    secret = auth.open_pending_totp_secret(svc, sess.get("reenrol_secret"), user.id)
    if secret is None:
        secret, sess["reenrol_secret"] = auth.new_pending_totp_secret(svc, user.id)
    form = ReenrolTotpForm()
    error = None
    if form.validate_on_submit():
        problems = password_problems_of_reauth(form.current.data, "mfa_reenrolment")
        if problems:
            error = problems[0]
        elif not accounts.reenrol_totp(
            db.session,
            svc,
            user,
            secret,
            form.code.data,
            keep_session_id=sess.row_id,
            ctx=audit_context(),
        ):
            error = "Code incorrect : saisissez le code affiché par la nouvelle application."
        else:
            sess.pop("reenrol_secret", None)
            flash("Votre nouvelle application d'authentification est enregistrée.", "success")
            return redirect(url_for("accounts.my_account"))
    uri = totp.provisioning_uri(secret, user.email)
    return render_template(
        "accounts/reenrol_totp.html", form=form, error=error, qr_svg=totp.qr_svg(uri), secret=secret
    )


# --- Security keys (WebAuthn) -------------------------------------------------------------


def _keys_page(form: EnrolKeyForm | None = None, problems: list[str] | None = None) -> str:
    user = the_user()
    return render_template(
        "accounts/security_keys.html",
        keys=keys.keys_of(db.session, user.id),
        form=form or EnrolKeyForm(),
        remove_form=ConfirmPasswordForm(),
        problems=problems or [],
        enrolment_only=bool(portal_session().get(KEY_ENROLMENT_ONLY)),
    )


@bp.route("/compte/cles", methods=["GET", "POST"])
def security_keys() -> str | Response:
    """The account's security keys; the form proves password and code, then the browser
    creates the new credential (static/keys.js)."""
    user, svc = the_user(), services()
    if not keys.available(svc.settings):
        abort(404)
    if request.method == "GET":
        return _keys_page()
    form = EnrolKeyForm()
    if not form.validate_on_submit():
        return _keys_page(form)  # the error summary links each field in error
    problems = password_problems_of_reauth(form.current.data, "key_enrolment")
    if problems:
        return _keys_page(form, problems)
    ceremony = accounts.start_key_enrolment(
        db.session, svc, user, form.code.data, form.name.data, audit_context()
    )
    if ceremony is None:
        return _keys_page(
            form, ["Code incorrect : saisissez le code affiché par votre application."]
        )
    portal_session()["key_enrol"] = ceremony.pending
    return render_template(
        "accounts/key_enrol.html", options_json=ceremony.options_json, name=form.name.data
    )


@bp.route("/compte/cles/enregistrer", methods=["POST"])
def enrol_key() -> tuple[Response, int] | Response:
    """The browser posts the new credential (JSON); the answer says where to go next."""
    sess = portal_session()
    key = keys.enrol_key(
        db.session,
        services().settings,
        the_user(),
        sess.pop("key_enrol", None),
        request.get_data(as_text=True),
        audit_context(),
    )
    if key is None:
        return jsonify(
            error="La clé n'a pas pu être enregistrée (délai dépassé, clé déjà enregistrée ou "
            "vérification de l'utilisateur absente). Recommencez."
        ), 400
    sess.pop(KEY_ENROLMENT_ONLY, None)
    flash(f"La clé « {key.name} » est enregistrée.", "success")
    return jsonify(redirect=url_for("accounts.security_keys"))


@bp.route("/compte/cles/<key_id>/supprimer", methods=["POST"])
def remove_key(key_id: str) -> str | Response:
    """Remove one of one's own keys, after the password."""
    form = ConfirmPasswordForm()
    if not form.validate_on_submit():
        return _keys_page(problems=["Saisissez votre mot de passe actuel."])
    problems = password_problems_of_reauth(form.current.data, "key_removal")
    if problems:
        return _keys_page(problems=problems)
    if not keys.remove_key(db.session, the_user(), key_id, audit_context()):
        abort(404)
    flash("La clé a été supprimée.", "success")
    return redirect(url_for("accounts.security_keys"))


@bp.route("/compte/cle-obligatoire")
def key_required() -> str:
    """The key policy's page: why a key is needed, and until when one may go without."""
    settings = services().settings
    return render_template(
        "accounts/key_required.html",
        deadline=settings.webauthn_enrol_deadline,
        enrolment_only=bool(portal_session().get(KEY_ENROLMENT_ONLY)),
    )


@bp.route("/compte/sessions/<handle>/fermer", methods=["POST"])
def close_session(handle: str) -> Response:
    """End one of one's own sessions (a forgotten computer)."""
    user = the_user()
    form = EmptyForm()
    if not form.validate_on_submit() or len(handle) != 16:
        abort(404)
    target = next((s for s in _my_sessions(user) if s.id[:16] == handle), None)
    if target is None:
        abort(404)
    accounts.close_session(db.session, user, target, handle, audit_context())
    if target.id == portal_session().row_id:
        portal_session().destroy()
        return redirect(url_for("auth.login"))
    flash("La session a été fermée.", "success")
    return redirect(url_for("accounts.my_account"))


# --- account manager ---------------------------------------------------------------------


def _manager() -> User:
    user = the_user()
    if not can_manage_accounts(user):
        abort(404)
    return user


def _managed(user_id: str) -> tuple[User, User]:
    actor = _manager()
    target = db.session.get(User, user_id) if len(user_id) == 32 else None
    if target is None or not can_manage_account(actor, target):
        abort(404)  # another organisation's account looks exactly like an unknown one
    return actor, target


@bp.route("/gestion/comptes")
def manage_list() -> str:
    """Accounts of the manager's organisation."""
    actor = _manager()
    users = db.session.execute(
        sa.select(User)
        .where(User.organisation_id == actor.organisation_id)
        .order_by(User.full_name)
    ).scalars()
    return render_template("accounts/manage_list.html", users=list(users))


def _role_choices(actor: User) -> list[tuple[str, str]]:
    allowed = roles_allowed_for(OrgKind(actor.organisation.kind))
    return [(str(r), ROLE_LABELS[r]) for r in Role if r in allowed]


def _today() -> date:
    return habilitations.today_in_paris(utcnow())


def _habilitation_form(form: HabilitationForm, kind: OrgKind) -> HabilitationForm:
    form.function.choices = habilitations.function_choices(kind)
    if form.granted_on.data is None and not form.is_submitted():
        form.granted_on.data = _today()
    return form


def _given(form: HabilitationForm) -> habilitations.HabilitationInput:
    return habilitations.HabilitationInput(
        function=form.function.data,
        function_label=form.function_label.data,
        granted_on=form.granted_on.data,
        ends_on=form.ends_on.data,
    )


@bp.route("/gestion/comptes/nouveau", methods=["GET", "POST"])
def manage_create() -> str | Response:
    """Create an account with its habilitation; the person receives an activation e-mail."""
    actor = _manager()
    form = CreateAccountForm()
    form.roles.choices = _role_choices(actor)
    _habilitation_form(form, OrgKind(actor.organisation.kind))
    error = None
    if form.validate_on_submit():
        try:
            new = accounts.create_account_and_mail_activation(
                db.session,
                services(),
                organisation=actor.organisation,
                email=form.email.data,
                full_name=form.full_name.data,
                roles=[Role(r) for r in form.roles.data],
                actor=actor_of(actor),
                ctx=audit_context(),
                habilitation=_given(form),
                granted_by=actor,
            )
        except accounts.AccountError as e:
            error = str(e)
        else:
            flash(
                f"Le compte de {new.user.full_name} a été créé ; un e-mail d'activation lui a "
                "été envoyé (lien valable 72 heures).",
                "success",
            )
            return redirect(url_for("accounts.manage_detail", user_id=new.user.id))
    # Field errors: the template's error summary lists them, each linked to its field.
    return render_template("accounts/manage_create.html", form=form, error=error)


def _habilitation_view(target: User) -> dict[str, object]:
    hab = target.habilitation
    kind = OrgKind(target.organisation.kind)
    reason = target.suspension_reason
    return {
        "habilitation": hab,
        "function_label": habilitations.function_label(kind, hab) if hab else None,
        "suspension_label": SUSPENSION_LABELS[SuspensionReason(reason)] if reason else None,
        "must_choose_password": accounts.must_choose_password(target),
    }


@bp.route("/gestion/comptes/<user_id>")
def manage_detail(user_id: str) -> str:
    """One account of the organisation, its habilitation and the actions on it."""
    _actor, target = _managed(user_id)
    return render_template(
        "accounts/manage_detail.html",
        target=target,
        form=EmptyForm(),
        departure_form=_departure_form(),
        **_habilitation_view(target),
    )


def _departure_form() -> DepartureForm:
    form = DepartureForm()
    form.reason.choices = departure.DEPARTURE_REASONS
    if not form.is_submitted():
        form.left_on.data = _today()
    return form


@bp.route("/gestion/comptes/<user_id>/depart", methods=["POST"])
def manage_departure(user_id: str) -> Response:
    """Départ de l'agent: revoke now, end sessions and tokens, hand deposits to the inbox."""
    actor, target = _managed(user_id)
    form = _departure_form()
    if not form.validate_on_submit():
        flash(" ".join(errors[0] for errors in form.errors.values() if errors), "error")
        return redirect(url_for("accounts.manage_detail", user_id=target.id))
    try:
        done = departure.record_departure(
            db.session,
            target,
            reason=form.reason.data,
            left_on=form.left_on.data,
            actor=actor_of(actor),
            ctx=audit_context(),
            today=_today(),
        )
    except accounts.AccountError as e:
        flash(str(e), "error")
    else:
        flash(
            f"Le départ de {target.full_name} est enregistré : compte révoqué, sessions et "
            f"jetons d'API fermés, {done.deposits_transferred} dépôt(s) transmis à la boîte "
            "partagée de l'organisation.",
            "success",
        )
    return redirect(url_for("accounts.manage_detail", user_id=target.id))


@bp.route("/gestion/comptes/<user_id>/habilitation/formulaire", methods=["POST"])
def manage_habilitation_form(user_id: str) -> tuple[Response, int]:
    """Store the signed habilitation form (PDF, the raw request body, CSRF token in the
    X-CSRFToken header), encrypted; the previous one is destroyed."""
    actor, target = _managed(user_id)
    if request.content_length is not None and request.content_length > FORM_LIMIT:
        return jsonify(error="Le formulaire doit être un fichier PDF de 10 Mo au plus."), 413
    content = request.stream.read(FORM_LIMIT + 1)
    svc = services()
    try:
        habilitations.store_form(
            db.session,
            svc.store,
            target,
            content,
            antivirus=Antivirus.of(svc),
            actor=actor_of(actor),
            ctx=audit_context(),
            now=utcnow(),
        )
    except habilitations.HabilitationError as e:
        return jsonify(error=str(e)), 422
    flash("Le formulaire d'habilitation signé est enregistré (chiffré).", "success")
    return jsonify(stored=True), 201


@bp.route("/gestion/comptes/<user_id>/habilitation/formulaire.pdf")
def manage_habilitation_form_download(user_id: str) -> WerkzeugResponse:
    """The signed habilitation form, decrypted for the account manager (audited)."""
    actor, target = _managed(user_id)
    try:
        chunks = habilitations.open_form(
            db.session, services().store, target, actor=actor_of(actor), ctx=audit_context()
        )
    except habilitations.HabilitationError:
        abort(404)
    response = WerkzeugResponse(chunks, mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="habilitation.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/gestion/comptes/<user_id>/habilitation", methods=["GET", "POST"])
def manage_habilitation(user_id: str) -> str | Response:
    """Record or change the habilitation of one account of the organisation."""
    actor, target = _managed(user_id)
    form = _habilitation_form(HabilitationForm(), OrgKind(target.organisation.kind))
    hab = target.habilitation
    if hab is not None and not form.is_submitted():
        form.function.data = hab.function
        form.function_label.data = hab.function_label
        form.granted_on.data = hab.granted_on
        form.ends_on.data = hab.ends_on
    problems: list[str] = []
    if form.validate_on_submit():
        try:
            habilitations.save_habilitation(
                db.session,
                target,
                _given(form),
                granted_by=actor,
                actor=actor_of(actor),
                ctx=audit_context(),
                today=_today(),
            )
        except habilitations.HabilitationError as e:
            problems = [str(e)]
        else:
            flash("L'habilitation a été enregistrée.", "success")
            return redirect(url_for("accounts.manage_detail", user_id=target.id))
    return render_template(
        "accounts/manage_habilitation.html", target=target, form=form, problems=problems
    )


_ACTIONS = {
    "suspendre": (accounts.suspend, "Le compte a été suspendu ; ses sessions sont fermées."),
    "revoquer": (accounts.revoke, "Le compte a été révoqué définitivement."),
}


@bp.route("/gestion/comptes/<user_id>/<action>", methods=["POST"])
def manage_action(user_id: str, action: str) -> Response:
    """Suspend, reactivate, revoke, reset MFA or resend the activation e-mail."""
    actor, target = _managed(user_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    svc, ctx, who = services(), audit_context(), actor_of(actor)
    try:
        if action in _ACTIONS:
            verb, message = _ACTIONS[action]
            accounts.change_status(db.session, verb, target, who, ctx)
        elif action == "reinitialiser-mfa":

            def mail_body(reset: accounts.MfaReset) -> str:
                token = reset.enrolment_token
                return render_template(
                    "mails/mfa_reset.txt",
                    link=svc.settings.base_url + url_for("auth.mfa_enrol", token=token),
                    manager=actor.full_name,
                    notices=[notices.api_tokens_revoked_for_owner(reset.api_tokens_revoked)],
                )

            reset = accounts.reset_mfa_and_mail(
                db.session, svc, target, who, ctx, mail_body=mail_body
            )
            message = " ".join(
                m
                for m in (
                    "La double authentification a été réinitialisée ; la personne a reçu un "
                    "e-mail pour configurer sa nouvelle application.",
                    notices.api_tokens_revoked_for_manager(reset.api_tokens_revoked),
                )
                if m
            )
        elif action == "reactiver":
            accounts.reactivate_and_mail(db.session, svc, target, who, ctx)
            message = (
                "Le compte a été réactivé ; la personne a reçu un e-mail pour choisir un nouveau "
                "mot de passe (lien valable 72 heures)."
                if target.activated_at
                else "Le compte a été réactivé ; il attend toujours son activation."
            )
        elif action == "renvoyer-activation":
            accounts.resend_activation_mail(db.session, svc, target, who, ctx)
            message = "Un nouvel e-mail d'activation a été envoyé."
        else:
            abort(404)
    except accounts.AccountError as e:
        flash(str(e), "error")
    else:
        flash(message, "success")
    return redirect(url_for("accounts.manage_detail", user_id=target.id))
