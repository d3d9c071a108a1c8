"""The `filr` command: one module per group, imported only when one of its commands runs.

Importing this package imports click and nothing of the portal: `filr flows validate` starts
without Flask or SQLAlchemy, and `filr --help` lists the groups from the map below.
"""

from __future__ import annotations

from portal.cli.lazy import Lazy, LazyGroup

__all__ = ["main"]

main = LazyGroup(
    "filr",
    help="Fil'R : échanges sécurisés entre départements, prestataires et France Travail.",
    lazy={
        "audit": Lazy("portal.cli.audit:audit_group", "Le journal d'audit."),
        "backup": Lazy(
            "portal.cli.backup:backup_group",
            "Sauvegardes vers le site de secours, restaurations, exercices de restauration.",
        ),
        "db": Lazy("portal.cli.db:db_group", "Migrations de la base de données."),
        "demo": Lazy(
            "portal.cli.demo:demo",
            "Crée les organisations de démonstration et un compte par rôle (rejouable).",
        ),
        "flows": Lazy(
            "portal.cli.flows:flows",
            "Flux XML CGPEM, PECGM, PECDH : vérification hors ligne et exemples.",
        ),
        "jobs": Lazy(
            "portal.cli.jobs:jobs",
            "Tâches planifiées (cron, minuteries systemd, CronJobs Kubernetes).",
        ),
        "keys": Lazy(
            "portal.cli.keys:keys",
            "Clés de chiffrement : rotation des clés de département et de la clé maîtresse.",
        ),
        "orgs": Lazy("portal.cli.orgs:orgs", "Organisations et leurs départements."),
        "serve": Lazy(
            "portal.cli.serve:serve",
            "Lance le portail avec gunicorn (les migrations sont appliquées d'abord).",
        ),
        "users": Lazy("portal.cli.users:users", "Comptes utilisateurs."),
    },
)
