"""Forms of the deposit pages."""

from __future__ import annotations

from wtforms import (
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.deposits.models import REASON_LABELS
from portal.forms import PortalForm


class NewDepositForm(PortalForm):
    """Space, category, title (documents only), reason, recipients, expiry and download limit.

    No free-text message: a reason from `REASON_LABELS`, if any.
    """

    departement = SelectField("Espace départemental", choices=[], validators=[DataRequired()])
    category = SelectField("Catégorie", choices=[], validators=[DataRequired()])
    # Required for a document only; the service says so next to the field (`DepositError.field`).
    title = StringField("Titre (documents seulement)", validators=[Optional(), Length(max=200)])
    reason = SelectField(
        "Motif de l'envoi (facultatif)",
        choices=[
            SelectChoice("", "Aucun motif"),
            *(SelectChoice(str(r), label) for r, label in REASON_LABELS.items()),
        ],
        validators=[Optional()],
    )
    recipients = SelectMultipleField(
        "Destinataires",
        choices=[],
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
        validators=[Optional()],
    )
    recipient_users = SelectMultipleField(
        "Personnes nommées",
        choices=[],
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
        validators=[Optional()],
    )
    lifetime_days = IntegerField(
        "Durée de mise à disposition (jours, facultatif)",
        validators=[Optional(), NumberRange(min=1, max=90)],
    )
    max_downloads = IntegerField(
        "Nombre maximal de téléchargements par destinataire (facultatif)",
        validators=[Optional(), NumberRange(min=1, max=100)],
    )


EACH = "chaque-depot"
DIGEST = "resume-quotidien"
HINTS = {
    EACH: "Un e-mail dès qu'un dépôt vous est adressé.",
    DIGEST: "Un seul e-mail par jour, qui compte les dépôts reçus par espace et par catégorie ; "
    "aucun e-mail les jours sans dépôt.",
}


class NotificationPreferenceForm(PortalForm):
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
