"""The workspace's search criteria (parsed once from the query string) and its forms."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from audit import AuditAction, Outcome
from audit.query import AuditFilter, Scope
from portal.forms import PortalForm
from portal.orgs.departements import is_departement_code
from portal.securite.labels import action_label

PARIS = ZoneInfo("Europe/Paris")
_ID = re.compile(r"^[0-9a-f]{32}$")
_TARGET_ID = re.compile(r"^[\w.:@-]{1,64}$")

FAMILY_LABELS = {
    "auth:": "Authentification (toutes)",
    "account:": "Comptes (toutes)",
    "deposit:": "Dépôts (toutes)",
    "fiche:": "Fiches de liaison (toutes)",
    "access:": "Accès refusés",
    "api-token:": "Jetons d'API (toutes)",
    "audit:": "Journal d'audit (toutes)",
    "alert:": "Alertes (toutes)",
    "organisation:": "Organisations",
    "storage:": "Stockage",
    "antivirus:": "Antivirus",
    "key:": "Clés de chiffrement",
    "flow:": "Flux XML (toutes)",
    "job:": "Tâches planifiées",
    "incident:": "Registre des incidents",
    "backup:": "Sauvegardes et restaurations",
}
OUTCOME_LABELS = {
    Outcome.SUCCESS: "Succès",
    Outcome.FAILURE: "Échec",
    Outcome.DENIED: "Refusé",
}
TARGET_TYPES = (
    "deposit",
    "fiche",
    "file",
    "user",
    "organisation",
    "api-token",
    "session",
    "alert",
    "incident",
)


def action_choices() -> list[tuple[str, str]]:
    """Families (prefixes ending with ':') then every exact action."""
    families = [(k, v) for k, v in FAMILY_LABELS.items()]
    return families + [(str(a), f"{action_label(a)} ({a})") for a in AuditAction]


# The days a period may name. The calendar's ends cannot be searched: "the day after
# 9999-12-31" and 0001-01-01 in Paris time (in UTC, the year 0) overflow `datetime`. A day out
# of range is brought back to the nearest bound, which selects the same rows.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)


def _day(value: str | None) -> date | None:
    try:
        day = datetime.strptime(value or "", "%Y-%m-%d").date()
    except ValueError:
        return None
    return min(max(day, FIRST_DAY), LAST_DAY)


def _paris_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, PARIS)


@dataclass(frozen=True)
class SearchArgs:
    """What the officer asked for; every value checked, unknown values dropped."""

    since: date | None = None
    until: date | None = None
    actor_id: str | None = None
    actor_email: str | None = None
    organisation_id: str | None = None
    departement: str | None = None
    action: str | None = None
    outcome: str | None = None
    source_ip: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    before_seq: int | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str], scope: Scope) -> SearchArgs:
        """Parse request arguments (never trusted)."""
        user = (args.get("utilisateur") or "").strip()
        actor_id = user.lower() if _ID.match(user.lower()) else None
        actor_email = user[:254] if "@" in user and not actor_id else None
        org = (args.get("organisation") or "").strip().lower()
        dep = (args.get("departement") or "").strip().upper()
        if not is_departement_code(dep) or (
            scope.departements is not None and dep not in scope.departements
        ):
            dep = ""
        action = args.get("action") or ""
        allowed_actions = {value for value, _label in action_choices()}
        outcome = args.get("resultat") or ""
        ip = (args.get("ip") or "").strip()
        try:
            ip = str(ipaddress.ip_address(ip)) if ip else ""
        except ValueError:
            ip = ""
        target_type = args.get("cible_type") or ""
        target_id = (args.get("cible") or "").strip()
        before = args.get("avant") or ""
        return cls(
            since=_day(args.get("du")),
            until=_day(args.get("au")),
            actor_id=actor_id,
            actor_email=actor_email,
            organisation_id=org if _ID.match(org) else None,
            departement=dep or None,
            action=action if action in allowed_actions else None,
            outcome=outcome if outcome in {str(o) for o in Outcome} else None,
            source_ip=ip or None,
            target_type=target_type if target_type in TARGET_TYPES else None,
            target_id=target_id if _TARGET_ID.match(target_id) else None,
            before_seq=int(before) if before.isdigit() and len(before) < 19 else None,
        )

    def to_filter(self, actor_id: str | None = None) -> AuditFilter:
        """The audit filter; *actor_id* replaces an e-mail once resolved."""
        return AuditFilter(
            start=_paris_midnight(self.since) if self.since else None,
            end=_paris_midnight(self.until + timedelta(days=1)) if self.until else None,
            actor_id=actor_id or self.actor_id,
            actor_org_id=self.organisation_id,
            departement=self.departement,
            action=self.action,
            outcome=self.outcome,
            source_ip=self.source_ip,
            target_type=self.target_type,
            target_id=self.target_id,
        )

    def args(self, **changes: Any) -> dict[str, str]:
        """Query arguments for a link to this search with *changes*."""
        values: dict[str, Any] = {
            "du": self.since.isoformat() if self.since else None,
            "au": self.until.isoformat() if self.until else None,
            "utilisateur": self.actor_id or self.actor_email,
            "organisation": self.organisation_id,
            "departement": self.departement,
            "action": self.action,
            "resultat": self.outcome,
            "ip": self.source_ip,
            "cible_type": self.target_type,
            "cible": self.target_id,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v}

    @property
    def is_empty(self) -> bool:
        """True when no criterion is given."""
        return not self.args()


class EmptyForm(PortalForm):
    """A form with only the CSRF token (acknowledge)."""
