"""The base of every form of the portal: WTForms' own French messages."""

from __future__ import annotations

from flask_wtf import FlaskForm


class PortalForm(FlaskForm):  # type: ignore[misc] # flask_wtf has no type hints
    """A FlaskForm whose built-in messages ("Ce champ est requis.") come in French.

    WTForms ships maintained French catalogues (`wtforms/locale/fr`); choosing the locale here
    uses them without Flask-Babel (the app sets `WTF_I18N_ENABLED=False` so that Flask-WTF
    hands the choice back to WTForms). The few messages the catalogue leaves untranslated
    (a length *between* two bounds) are given in French by the forms themselves.
    """

    class Meta:
        locales = ("fr_FR", "fr")
