"""Forms of the token pages."""

from __future__ import annotations

from wtforms import IntegerField, PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from portal.api.models import MAX_TOKEN_LIFETIME, SCOPE_LABELS
from portal.api.services import DEFAULT_LIFETIME_DAYS
from portal.auth.forms import MAX_PW
from portal.forms import PortalForm


class CreateTokenForm(PortalForm):
    """Name, scopes and lifetime of a new token, confirmed with the current password."""

    name = StringField("Nom du jeton", validators=[DataRequired(), Length(max=100)])
    scopes = SelectMultipleField(
        "Portées",
        choices={str(s): label for s, label in SCOPE_LABELS.items()},
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
        validators=[DataRequired(message="Choisissez au moins une portée.")],
    )
    lifetime_days = IntegerField(
        "Durée de validité (jours)",
        default=DEFAULT_LIFETIME_DAYS,
        validators=[
            DataRequired(),
            NumberRange(
                min=1,
                max=MAX_TOKEN_LIFETIME.days,
                message=f"Entre 1 et {MAX_TOKEN_LIFETIME.days} jours.",
            ),
        ],
    )
    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
