"""Forms of "mon compte" and of the account manager's pages."""

from __future__ import annotations

from wtforms import (
    DateField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.auth.forms import CODE_LENGTH, MAX_PW
from portal.forms import PortalForm


class ChangePasswordForm(PortalForm):
    """Change one's password (the current one proves who asks)."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
    password = PasswordField(
        "Nouveau mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )
    confirmation = PasswordField(
        "Confirmez le nouveau mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )


class ConfirmPasswordForm(PortalForm):
    """A sensitive change confirmed with the current password."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])


class ReenrolTotpForm(PortalForm):
    """Move to a new authenticator: password, then a code from the new app."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
    code = StringField(
        "Code à 6 chiffres affiché par la nouvelle application",
        validators=[DataRequired(), Length(min=6, max=8, message=CODE_LENGTH)],
    )


class EnrolKeyForm(PortalForm):
    """Add a security key: the password and a current code prove who asks; the name tells
    the keys apart."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
    code = StringField(
        "Code à 6 chiffres de votre application d'authentification",
        validators=[DataRequired(), Length(min=6, max=8)],
    )
    name = StringField(
        "Nom de la clé", validators=[DataRequired(), Length(min=1, max=64)], default="Ma clé"
    )


class EmptyForm(PortalForm):
    """Buttons that only need the CSRF token."""


class HabilitationForm(PortalForm):
    """The habilitation of an account: function, granted on, optional end date."""

    # The service checks the function against the organisation's list, in French.
    function = SelectField(
        "Fonction",
        choices=[],
        validate_choice=False,
        validators=[DataRequired(message="Choisissez une fonction.")],
    )
    function_label = StringField("Fonction (si « autre »)", validators=[Optional(), Length(max=80)])
    granted_on = DateField(
        "Habilitée le",
        validators=[DataRequired(message="Indiquez la date d'habilitation (JJ/MM/AAAA).")],
    )
    ends_on = DateField("Fin de l'habilitation (au plus 3 ans)", validators=[Optional()])


class CreateAccountForm(HabilitationForm):
    """The account manager creates an account of its own organisation, with its habilitation."""

    full_name = StringField(
        "Prénom et nom",
        validators=[DataRequired(), Length(min=2, max=120, message="Entre 2 et 120 caractères.")],
    )
    email = EmailField(
        "Adresse électronique professionnelle", validators=[DataRequired(), Length(max=254)]
    )
    roles = SelectMultipleField(
        "Rôles",
        choices=[],
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
        validators=[DataRequired(message="Choisissez au moins un rôle.")],
    )


class DepartureForm(PortalForm):
    """Départ de l'agent: the reason (a code) and the day the person left."""

    # The service checks the code, in French.
    reason = SelectField(
        "Motif",
        choices={},
        validate_choice=False,
        validators=[DataRequired(message="Choisissez le motif du départ.")],
    )
    left_on = DateField(
        "Date du départ", validators=[DataRequired(message="Indiquez la date du départ.")]
    )
