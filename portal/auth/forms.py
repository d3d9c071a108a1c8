"""Forms of the log-in, activation and password pages."""

from __future__ import annotations

from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from portal.forms import PortalForm

MAX_PW = 1024
# WTForms' French catalogue leaves "between two bounds" untranslated.
CODE_LENGTH = "Le code compte 6 à 8 caractères."


class LoginForm(PortalForm):
    """E-mail, password and the second factor, checked together."""

    email = EmailField("Adresse électronique", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Mot de passe", validators=[DataRequired(), Length(max=MAX_PW)])
    # Empty for an account with a security key: the key is asked next.
    code = StringField(
        "Code de votre application d'authentification",
        validators=[Optional(), Length(max=32)],
    )


class NewPasswordForm(PortalForm):
    """Choose a password (the policy is checked by the service, with the user's data)."""

    password = PasswordField(
        "Nouveau mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )
    confirmation = PasswordField(
        "Confirmez le mot de passe", validators=[DataRequired(), Length(max=MAX_PW)]
    )


class TotpConfirmForm(PortalForm):
    """Prove the authenticator app holds the new secret."""

    code = StringField(
        "Code à 6 chiffres", validators=[DataRequired(), Length(min=6, max=8, message=CODE_LENGTH)]
    )


class PasswordThenTotpForm(PortalForm):
    """Re-enrolment after an MFA reset: the password first proves who is enrolling."""

    password = PasswordField("Mot de passe", validators=[DataRequired(), Length(max=MAX_PW)])


class ForgotPasswordForm(PortalForm):
    """Ask for a reset link."""

    email = EmailField("Adresse électronique", validators=[DataRequired(), Length(max=254)])


class SecondFactorForm(PortalForm):
    """The local second factor after a ProConnect log-in that asserted none."""

    code = StringField(
        "Code de votre application d'authentification",
        validators=[DataRequired(), Length(max=32)],
    )
