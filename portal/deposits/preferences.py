"""How a user hears of new deposits: one e-mail each, or one daily digest."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from werkzeug.wrappers.response import Response
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from portal.accounts.models import User
from portal.db import db, utcnow
from portal.web import the_user

bp = Blueprint("preferences", __name__)

EACH = "chaque-depot"
DIGEST = "resume-quotidien"
HINTS = {
    EACH: "Un e-mail dès qu'un dépôt vous est adressé.",
    DIGEST: "Un seul e-mail par jour, qui compte les dépôts reçus par espace et par catégorie ; "
    "aucun e-mail les jours sans dépôt.",
}


class NotificationPreferenceForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """One e-mail per deposit, or a daily digest."""

    mode = RadioField(
        "Comment voulez-vous être prévenu des nouveaux dépôts ?",
        choices=[
            SelectChoice(EACH, "Recevoir un e-mail à chaque dépôt"),
            SelectChoice(DIGEST, "Un résumé quotidien"),
        ],
        validators=[InputRequired(message="Choisissez une option.")],
        invalid_choice_message="Choisissez une option.",
    )


def set_daily_digest(session: Session, user: User, daily: bool, now: datetime) -> None:
    """Switch *user* between one e-mail per deposit and the daily digest."""
    if daily and not user.daily_digest:
        # Deposits received so far were announced one by one: the first digest starts now.
        user.last_digest_at = now
    user.daily_digest = daily


@bp.route("/compte/notifications", methods=["GET", "POST"])
def notifications() -> str | Response:
    """Show and save the user's choice of notification."""
    user = the_user()
    form = NotificationPreferenceForm()
    if form.validate_on_submit():
        set_daily_digest(db.session, user, form.mode.data == DIGEST, utcnow())
        db.session.commit()
        flash("Vos préférences de notification ont été enregistrées.", "success")
        return redirect(url_for("preferences.notifications"))
    if not form.is_submitted():
        form.mode.data = DIGEST if user.daily_digest else EACH
    return render_template("deposits/preferences.html", form=form, hints=HINTS)
