"""What the security workspace shows a person: French labels for the trail's codes.

The codes (`auth:login:success`, `user`) stay what the filters and the exports carry; pages
show these labels beside them. An action or a detail without a label shows its code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from audit import AuditAction, AuditEvent
from audit.export import iter_csv
from portal.formats import datetime_fr

ACTION_LABELS: dict[str, str] = {
    AuditAction.AUTH_LOGIN_SUCCESS: "Connexion réussie",
    AuditAction.AUTH_LOGIN_FAILURE: "Échec de connexion",
    AuditAction.AUTH_LOGIN_THROTTLED: "Connexion freinée (trop d'échecs)",
    AuditAction.AUTH_MFA_SUCCESS: "Code de double authentification accepté",
    AuditAction.AUTH_MFA_FAILURE: "Code de double authentification refusé",
    AuditAction.AUTH_MFA_REPLAY: "Code de double authentification rejoué",
    AuditAction.AUTH_MFA_RECOVERY_CODE_USED: "Code de secours utilisé",
    AuditAction.AUTH_MFA_ENROLLED: "Application d'authentification enregistrée",
    AuditAction.AUTH_MFA_RESET: "Double authentification réinitialisée",
    AuditAction.AUTH_RECOVERY_CODES_REGENERATED: "Codes de secours renouvelés",
    AuditAction.AUTH_REAUTH_FAILURE: "Mot de passe de confirmation refusé",
    AuditAction.AUTH_LOGOUT: "Déconnexion",
    AuditAction.AUTH_SESSION_EXPIRED: "Session expirée",
    AuditAction.AUTH_SESSION_REVOKED: "Session fermée",
    AuditAction.AUTH_PASSWORD_CHANGED: "Mot de passe modifié",
    AuditAction.AUTH_PASSWORD_RESET_REQUESTED: "Réinitialisation du mot de passe demandée",
    AuditAction.AUTH_PASSWORD_RESET: "Mot de passe réinitialisé",
    AuditAction.ACCOUNT_ACTIVATED: "Compte activé",
    AuditAction.ACCOUNT_CREATED: "Compte créé",
    AuditAction.ACCOUNT_SUSPENDED: "Compte suspendu",
    AuditAction.ACCOUNT_REACTIVATED: "Compte réactivé",
    AuditAction.ACCOUNT_REVOKED: "Compte révoqué",
    AuditAction.ACCOUNT_ACTIVATION_SENT: "E-mail d'activation envoyé",
    AuditAction.ACCESS_DENIED: "Accès refusé",
    AuditAction.ORGANISATION_CREATED: "Organisation créée",
    AuditAction.ORGANISATION_UPDATED: "Organisation modifiée",
    AuditAction.AUDIT_VERIFIED: "Chaîne du journal vérifiée",
    AuditAction.AUDIT_SEARCHED: "Recherche dans le journal",
    AuditAction.AUDIT_EXPORTED: "Export du journal",
    AuditAction.AUDIT_PURGED: "Entrées anciennes du journal supprimées",
    AuditAction.AUDIT_HEAD_SENT: "Empreinte du journal envoyée",
    AuditAction.DEPOSIT_CREATED: "Dépôt créé (brouillon)",
    AuditAction.DEPOSIT_PUBLISHED: "Dépôt envoyé",
    AuditAction.DEPOSIT_FILE_UPLOADED: "Fichier ajouté",
    AuditAction.DEPOSIT_FILE_REFUSED: "Fichier refusé",
    AuditAction.DEPOSIT_NOTIFICATION_SENT: "Destinataires prévenus",
    AuditAction.DEPOSIT_REMINDER_SENT: "Rappel avant expiration envoyé",
    AuditAction.DEPOSIT_DIGEST_SENT: "Résumé quotidien envoyé",
    AuditAction.DEPOSIT_LINK_ISSUED: "Lien de téléchargement délivré",
    AuditAction.DEPOSIT_LINK_REFUSED: "Lien de téléchargement refusé",
    AuditAction.DEPOSIT_DOWNLOAD_STARTED: "Téléchargement commencé",
    AuditAction.DEPOSIT_DOWNLOADED: "Fichier téléchargé",
    AuditAction.DEPOSIT_TAKEN_IN_CHARGE: "Dépôt pris en charge",
    AuditAction.DEPOSIT_WITHDRAWN: "Dépôt retiré",
    AuditAction.DEPOSIT_EXPIRED: "Dépôt expiré",
    AuditAction.DEPOSIT_DESTROYED: "Dépôt détruit",
    AuditAction.STORAGE_ORPHAN_DESTROYED: "Objet orphelin détruit",
    AuditAction.STORAGE_INTEGRITY_FAILED: "Fichier stocké altéré",
    AuditAction.API_TOKEN_CREATED: "Jeton d'API créé",
    AuditAction.API_TOKEN_REVOKED: "Jeton d'API révoqué",
    AuditAction.JOB_RUN: "Tâche planifiée exécutée",
    AuditAction.ALERT_RAISED: "Alerte levée",
    AuditAction.ALERT_ACKNOWLEDGED: "Alerte acquittée",
    AuditAction.FICHE_DRAFT_SAVED: "Fiche enregistrée (brouillon)",
    AuditAction.FICHE_SENT: "Fiche envoyée",
    AuditAction.FICHE_VIEWED: "Fiche consultée",
    AuditAction.FICHE_DECIDED: "Décision enregistrée sur une fiche",
    AuditAction.FICHE_FORWARDED: "Fiche transmise au prestataire mandaté",
    AuditAction.FICHE_WITHDRAWN: "Fiche retirée (remplacée par une correction)",
    AuditAction.FICHE_NOTIFICATION_SENT: "Destinataires d'une fiche prévenus",
    AuditAction.FICHE_REMINDER_SENT: "Rappel de décision sur une fiche envoyé",
    AuditAction.FICHE_PDF_DOWNLOADED: "PDF d'une fiche téléchargé ou imprimé",
    AuditAction.FICHE_DESTROYED: "Fiche détruite",
    AuditAction.FLOW_VALIDATED: "Flux accepté",
    AuditAction.FLOW_REJECTED: "Flux refusé",
    AuditAction.FLOW_SANITY_FLAGGED: "Flux signalé (volume inhabituel)",
    AuditAction.FLOW_FLAGGED_UNUSABLE: "Flux déclaré inexploitable",
    AuditAction.FLOW_REMINDER_SENT: "Rappel du calendrier des flux envoyé",
    AuditAction.KEY_ROTATED: "Clé de chiffrement renouvelée",
    AuditAction.ACCOUNT_HABILITATION_UPDATED: "Habilitation enregistrée",
    AuditAction.ACCOUNT_HABILITATION_FORM_STORED: "Formulaire d'habilitation signé déposé",
    AuditAction.ACCOUNT_HABILITATION_FORM_DOWNLOADED: "Formulaire d'habilitation signé téléchargé",
    AuditAction.ACCOUNT_NOTICE_SENT: "Avis envoyé au titulaire du compte",
    AuditAction.ACCOUNT_DEPARTED: "Départ de l'agent enregistré",
    AuditAction.ACCOUNT_REVIEW_OPENED: "Revue des habilitations ouverte",
    AuditAction.ACCOUNT_REVIEW_CONFIRMED: "Habilitation confirmée à la revue",
    AuditAction.ACCOUNT_REVIEW_SUSPENDED: "Compte suspendu à la revue",
    AuditAction.ACCOUNT_REVIEW_REMINDED: "Rappel de revue envoyé",
    AuditAction.ACCOUNT_REVIEW_CLOSED: "Revue des habilitations close",
    AuditAction.INCIDENT_CREATED: "Incident enregistré",
    AuditAction.INCIDENT_LINKED: "Élément rattaché à un incident",
    AuditAction.INCIDENT_NOTICE_RECORDED: "Notification d'incident enregistrée",
    AuditAction.INCIDENT_REMINDER_SENT: "Rappel d'échéance d'incident envoyé",
    AuditAction.DEPOSIT_FILE_INFECTED: "Fichier refusé par l'antivirus",
    AuditAction.DEPOSIT_SCAN_DEFERRED: "Analyse antivirus différée",
    AuditAction.DEPOSIT_SCAN_BYPASSED: "Fichier admis sans analyse antivirus (contournement)",
    AuditAction.DEPOSIT_HELD_FOR_SCAN: "Dépôt en attente d'analyse antivirus",
    AuditAction.ANTIVIRUS_SIGNATURES_STALE: "Signatures antivirus trop anciennes",
    AuditAction.BACKUP_COMPLETED: "Sauvegarde terminée",
    AuditAction.BACKUP_FAILED: "Échec de la sauvegarde",
    AuditAction.BACKUP_RESTORED: "Sauvegarde restaurée",
    AuditAction.BACKUP_DRILL: "Exercice de restauration",
    AuditAction.AUTH_KEY_ENROLLED: "Clé de sécurité enregistrée",
    AuditAction.AUTH_KEY_REMOVED: "Clé de sécurité retirée",
    AuditAction.AUTH_KEY_SUCCESS: "Connexion par clé de sécurité",
    AuditAction.AUTH_KEY_FAILURE: "Clé de sécurité refusée",
    AuditAction.AUTH_KEY_CLONE_WARNING: "Clé de sécurité peut-être clonée (compteur)",
    AuditAction.AUTH_KEY_REQUIRED: "Clé de sécurité exigée par la politique",
}

TARGET_TYPE_LABELS: dict[str, str] = {
    "deposit": "Dépôt",
    "fiche": "Fiche de liaison",
    "file": "Fichier",
    "user": "Compte",
    "organisation": "Organisation",
    "api-token": "Jeton d'API",
    "session": "Session",
    "alert": "Alerte",
    "flow": "Flux",
    "departement-key": "Clé de département",
    "master-key": "Clé maîtresse",
    "object": "Objet stocké",
    "scope": "Périmètre",
    "incident": "Incident",
    "job": "Tâche planifiée",
}

DETAIL_LABELS: dict[str, str] = {
    "count_in_window": "Nombre maximal dans la fenêtre",
    "threshold": "Seuil",
    "window_minutes": "Fenêtre (minutes)",
    "departements": "Départements visés",
    "networks": "Nouveaux réseaux",
    "network": "Réseau",
    "first_broken_seq": "Première entrée rompue",
    "reason": "Cause",
    "deposit_id": "Dépôt",
    "object_key": "Objet stocké",
    "segment": "Premier segment en échec (numéroté à partir de 0)",
    "bytes_sent": "Octets envoyés",
    "departement": "Département",
    "deposits": "Dépôts",
    "digest": "Résumé",
    "error": "Erreur",
    "failed": "En échec",
    "files": "Fichiers",
    "findings": "Constats",
    "flow_id": "Flux",
    "flow_type": "Type de flux",
    "is_national": "Périmètre national",
    "national": "Périmètre national",
    "job": "Tâche",
    "kind": "Nature",
    "mfa_enrolment_link_voided": "Lien d'enregistrement annulé",
    "organisation_id": "Organisation",
    "purpose": "Objet",
    "results": "Résultats",
    "retry_after": "Nouvel essai après (secondes)",
    "rewrapped": "Clés rechiffrées",
    "roles": "Rôles",
    "scope": "Périmètre",
    "sent": "Envoyés",
    "size": "Taille (octets)",
    "spaces": "Espaces",
    "territory": "Territoire",
    "via": "Par",
    "view": "Vue",
    "format": "Format",
    "before_seq": "Avant l'entrée n°",
    "action": "Action",
    "outcome": "Résultat",
    "actor_id": "Acteur",
    "actor_org_id": "Organisation de l'acteur",
    "source_ip": "Adresse IP",
    "target_type": "Type de cible",
    "target_id": "Cible",
    "start": "Du",
    "end": "Au",
    "unparsed": "Texte brut",
    "category": "Catégorie",
    "lifetime_days": "Durée de mise à disposition (jours)",
    "recipients": "Destinataires",
    "max_downloads": "Téléchargements maximum",
    "errors": "Erreurs",
    "warnings": "Avertissements",
    "records": "Dossiers",
    "period": "Période",
    "marker": "Repère",
}


def action_label(code: str) -> str:
    """The French label of an action code (the code itself when it has none)."""
    return ACTION_LABELS.get(code, code)


def target_type_label(code: str | None) -> str:
    """The French label of a target type."""
    if not code:
        return "—"
    return TARGET_TYPE_LABELS.get(code, code)


def detail_fields(details: str | None) -> list[tuple[str, str]]:
    """An event's details (canonical JSON) as (label, value) pairs to show as fields."""
    if not details:
        return []
    try:
        parsed: Any = json.loads(details)
    except ValueError:
        return [(DETAIL_LABELS["unparsed"], details)]
    if not isinstance(parsed, dict):
        return [(DETAIL_LABELS["unparsed"], details)]
    return [(DETAIL_LABELS.get(str(key), str(key)), _value(value)) for key, value in parsed.items()]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "oui" if value else "non"
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return " ; ".join(f"{DETAIL_LABELS.get(k, k)} : {_value(v)}" for k, v in value.items())
    return str(value)


_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"OPR/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[.\d]* .*Safari/")),
)
_SYSTEMS = (
    ("Windows", re.compile(r"Windows NT")),
    ("Android", re.compile(r"Android")),
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux|X11")),
)
SHORT_USER_AGENT_MAX = 40


def short_user_agent(user_agent: str | None) -> str:
    """`Firefox 128 · Windows` for a browser; a script's own name, cut to 40 characters."""
    if not user_agent:
        return "—"
    browser = next(
        (f"{name} {m.group(1)}" for name, rx in _BROWSERS if (m := rx.search(user_agent))), None
    )
    system = next((name for name, rx in _SYSTEMS if rx.search(user_agent)), None)
    if browser:
        return f"{browser} · {system}" if system else browser
    if len(user_agent) <= SHORT_USER_AGENT_MAX:
        return user_agent
    return user_agent[: SHORT_USER_AGENT_MAX - 1] + "…"


# The audit CSV as the portal's other CSV files: `;`, UTF-8 with a byte-order mark (the view
# adds it), French column names; codes kept, French labels and Paris time beside them.
CSV_HEADERS = {
    "seq": "N°",
    "occurred_at": "Horodatage (UTC)",
    "action": "Code de l'action",
    "outcome": "Résultat",
    "actor_id": "Identifiant de l'acteur",
    "actor_org_id": "Identifiant de l'organisation de l'acteur",
    "target_type": "Type de cible",
    "target_id": "Identifiant de la cible",
    "target_departement": "Espace",
    "source_ip": "Adresse IP",
    "user_agent": "Navigateur",
    "request_id": "Identifiant de requête",
    "details": "Détails",
    "prev_hash": "Empreinte précédente",
    "hash": "Empreinte",
}


def iter_french_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The audit CSV in the portal's French convention (without its byte-order mark)."""
    return iter_csv(
        events,
        delimiter=";",
        headers=CSV_HEADERS,
        derived=(
            ("Date (heure de Paris)", lambda e: datetime_fr(e.occurred_at, at=" ")),
            ("Action", lambda e: action_label(e.action)),
            ("Type de cible (libellé)", lambda e: target_type_label(e.target_type)),
        ),
    )
