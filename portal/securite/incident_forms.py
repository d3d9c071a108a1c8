"""Forms of the incident register."""

from __future__ import annotations

from wtforms import (
    DateTimeLocalField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal.forms import PortalForm
from portal.securite.incident_models import INCIDENT_KIND_LABELS, NOTICE_KIND_LABELS

WHEN = "%Y-%m-%dT%H:%M"


class IncidentForm(PortalForm):
    """Record an incident (no personal data in any field)."""

    kind = SelectField(
        "Nature de l'incident",
        choices={str(k): v for k, v in INCIDENT_KIND_LABELS.items()},
        validate_choice=False,  # the service checks it, in French
        validators=[DataRequired(message="Choisissez la nature de l'incident.")],
    )
    title = StringField(
        "Intitulé (sans donnée personnelle)",
        validators=[DataRequired(message="Donnez un intitulé."), Length(max=120)],
    )
    detected_at = DateTimeLocalField(
        "Détecté le (heure de Paris)",
        format=WHEN,
        validators=[DataRequired(message="Indiquez la date et l'heure de détection.")],
    )
    departements = StringField(
        "Départements concernés (codes séparés par des virgules)",
        validators=[Optional(), Length(max=400)],
    )
    partner_notice_hours = IntegerField(
        "Délai de notification aux partenaires (heures)",
        validators=[NumberRange(min=1, max=168, message="De 1 à 168 heures.")],
    )
    description = TextAreaField(
        "Description (sans donnée personnelle)", validators=[Optional(), Length(max=5000)]
    )


class NoticeForm(PortalForm):
    """Record a notice that went out."""

    kind = SelectField(
        "Destinataire",
        choices={str(k): v for k, v in NOTICE_KIND_LABELS.items()},
        validate_choice=False,  # the view refuses an unknown one, in French
    )
    sent_at = DateTimeLocalField(
        "Envoyée le (heure de Paris)",
        format=WHEN,
        validators=[DataRequired(message="Indiquez la date et l'heure d'envoi.")],
    )
    recipients = StringField(
        "Adressée à", validators=[DataRequired(message="Indiquez à qui."), Length(max=500)]
    )


class LinkForm(PortalForm):
    """Link an audit row by its number."""

    seq = IntegerField(
        "N° de l'entrée du journal",
        validators=[DataRequired(message="Indiquez un numéro."), NumberRange(min=1)],
    )
