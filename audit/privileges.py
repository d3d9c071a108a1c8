"""PostgreSQL privileges that make the audit trail append-only for the application's role.

Two roles (docs/audit.md): the *owner* runs the migrations and the retention purge and owns
every table; the *application role* (``FILR_DATABASE_APP_ROLE``) is the one the portal's
servers log in with. It may read and write the portal's tables but, on the audit trail, only
INSERT and SELECT; a trigger (migration 0005) refuses UPDATE, DELETE and TRUNCATE to every
role but a superuser and the owner's retention purge, in case a grant is ever widened by hand.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

# Tables the application may only append to and read.
APPEND_ONLY = ("audit_event",)
# Tables the application may only read (written by migrations or by the owner's jobs).
READ_ONLY = ("audit_checkpoint", "alembic_version")

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PrivilegeError(RuntimeError):
    """The application role cannot be set up."""


def _quoted_role(conn: sa.Connection, role: str) -> str:
    # Identifiers cannot be bound parameters: accept only plain lower-case role names.
    if not _ROLE_NAME.match(role):
        raise PrivilegeError(f"invalid PostgreSQL role name: {role!r}")
    return conn.dialect.identifier_preparer.quote(role)


def role_exists(conn: sa.Connection, role: str) -> bool:
    """True when the PostgreSQL role *role* exists."""
    found = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    return found.first() is not None


def grant_app_role(conn: sa.Connection, role: str) -> None:
    """Give *role* the application's privileges (idempotent; run by the owner on PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return
    quoted = _quoted_role(conn, role)
    if not role_exists(conn, role):
        raise PrivilegeError(f"the PostgreSQL role {role!r} does not exist: create it first")
    schema = conn.dialect.identifier_preparer.quote(
        conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    )
    statements = [
        f"GRANT USAGE ON SCHEMA {schema} TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}",
        # Tables and sequences created by later migrations (run by this same owner).
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
    ]
    existing = set(sa.inspect(conn).get_table_names())
    for table in APPEND_ONLY:
        if table in existing:
            statements += [
                f"REVOKE ALL ON {table} FROM {quoted}",
                f"GRANT SELECT, INSERT ON {table} TO {quoted}",
            ]
    for table in READ_ONLY:
        if table in existing:
            statements += [
                f"REVOKE ALL ON {table} FROM {quoted}",
                f"GRANT SELECT ON {table} TO {quoted}",
            ]
    for statement in statements:
        conn.exec_driver_sql(statement)


def revoke_app_role(conn: sa.Connection, role: str) -> None:
    """Undo `grant_app_role` (downgrade of migration 0005)."""
    if conn.dialect.name != "postgresql" or not role_exists(conn, role):
        return
    quoted = _quoted_role(conn, role)
    schema = conn.dialect.identifier_preparer.quote(
        conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    )
    for statement in (
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {quoted}",
        # Role and schema are validated, quoted identifiers (they cannot be bound parameters).
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE USAGE, SELECT ON SEQUENCES "  # noqa: S608
        f"FROM {quoted}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}",
        f"REVOKE USAGE ON SCHEMA {schema} FROM {quoted}",
    ):
        conn.exec_driver_sql(statement)
