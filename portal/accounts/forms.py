"""Forms of "mon compte" and of the account manager's pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

MAX_PW = 1024


class ChangePasswordForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """Change one's password (the current one proves who asks)."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
    password = PasswordField(
        "Nouveau mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )
    confirmation = PasswordField(
        "Confirmez le nouveau mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )


class ConfirmPasswordForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """A sensitive change confirmed with the current password."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])


class ReenrolTotpForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """Move to a new authenticator: password, then a code from the new app."""

    current = PasswordField("Mot de passe actuel", validators=[DataRequired(), Length(max=MAX_PW)])
    code = StringField(
        "Code à 6 chiffres affiché par la nouvelle application",
        validators=[DataRequired(), Length(min=6, max=8)],
    )


class EnrolKeyForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
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


class EmptyForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """Buttons that only need the CSRF token."""


class CreateAccountForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """The account manager creates an account of its own organisation."""

    full_name = StringField("Prénom et nom", validators=[DataRequired(), Length(min=2, max=120)])
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
