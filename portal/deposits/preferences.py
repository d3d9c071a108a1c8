"""How a user hears of new deposits: one e-mail each, or one daily digest."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers.response import Response
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from portal.db import db, utcnow
from portal.deposits import services as deposits
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


@bp.route("/compte/notifications", methods=["GET", "POST"])
def notifications() -> str | Response:
    """Show and save the user's choice of notification."""
    user = the_user()
    form = NotificationPreferenceForm()
    if form.validate_on_submit():
        deposits.set_daily_digest(db.session, user, form.mode.data == DIGEST, utcnow())
        flash("Vos préférences de notification ont été enregistrées.", "success")
        return redirect(url_for("preferences.notifications"))
    if not form.is_submitted():
        form.mode.data = DIGEST if user.daily_digest else EACH
    return render_template("deposits/preferences.html", form=form, hints=HINTS)
