"""The `filr` command: one module per group, imported only when one of its commands runs.

Importing this package imports click and nothing of the portal: `filr flows validate` starts
without Flask or SQLAlchemy, and `filr --help` lists the groups from the map below.
"""

from __future__ import annotations

from portal.cli.lazy import Lazy, LazyGroup

__all__ = ["main"]

main = LazyGroup(
    "filr",
    help="Fil'R: secure exchanges between départements, providers and France Travail.",
    lazy={
        "audit": Lazy("portal.cli.audit:audit_group", "The audit trail."),
        "backup": Lazy(
            "portal.cli.backup:backup_group",
            "Backups to the backup site, restores, restore drills.",
        ),
        "db": Lazy("portal.cli.db:db_group", "Database migrations."),
        "demo": Lazy(
            "portal.cli.demo:demo",
            "Create the demo organisations and one account per role (idempotent).",
        ),
        "flows": Lazy(
            "portal.cli.flows:flows",
            "Flux XML CGPEM, PECGM, PECDH : vérification hors ligne et exemples.",
        ),
        "jobs": Lazy(
            "portal.cli.jobs:jobs", "Scheduled jobs (cron, systemd timers, Kubernetes CronJobs)."
        ),
        "keys": Lazy(
            "portal.cli.keys:keys",
            "Encryption keys: rotation of département keys and of the master key.",
        ),
        "orgs": Lazy("portal.cli.orgs:orgs", "Organisations and their départements."),
        "serve": Lazy(
            "portal.cli.serve:serve", "Run the portal with gunicorn (migrations are applied first)."
        ),
        "users": Lazy("portal.cli.users:users", "User accounts."),
    },
)
