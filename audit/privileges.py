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
        # Exactly these privileges: whatever was granted by hand before is taken back first
        # (in the same transaction, so the servers never see the role without its grants).
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}",
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


# Role attributes the application's role must not hold (columns of pg_roles).
_FORBIDDEN_ATTRIBUTES = {
    "rolsuper": "SUPERUSER",
    "rolcreaterole": "CREATEROLE",
    "rolcreatedb": "CREATEDB",
    "rolreplication": "REPLICATION",
    "rolbypassrls": "BYPASSRLS",
}
_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
_SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
_B64 = "[A-Za-z0-9+/=]+"
_SCRAM_VERIFIER = re.compile(rf"^SCRAM-SHA-256\$[0-9]+:{_B64}\${_B64}:{_B64}$")
APP_PASSWORD_MIN_LENGTH = 16


def create_app_role(conn: sa.Connection, role: str, password: str) -> None:
    """Create *role*: LOGIN with *password*, and no other power (run by the owner, CREATEROLE).

    The server receives a SCRAM-SHA-256 verifier computed here, never the password itself, so
    the password cannot end up in PostgreSQL's statement log.
    """
    if conn.dialect.name != "postgresql":
        raise PrivilegeError("les rôles ne concernent que PostgreSQL")
    quoted = _quoted_role(conn, role)
    if len(password) < APP_PASSWORD_MIN_LENGTH:
        raise PrivilegeError(
            f"le mot de passe du rôle de l'application doit compter au moins "
            f"{APP_PASSWORD_MIN_LENGTH} caractères"
        )
    pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr] # psycopg 3 here
    verifier = pgconn.encrypt_password(
        password.encode("utf-8"), role.encode("ascii"), b"scram-sha-256"
    ).decode("ascii")
    if not _SCRAM_VERIFIER.match(verifier):  # cannot hold a quote: safe inside '…' below
        raise PrivilegeError("empreinte de mot de passe inattendue (libpq)")
    try:
        conn.exec_driver_sql(
            f"CREATE ROLE {quoted} LOGIN PASSWORD '{verifier}' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        )
    except sa.exc.ProgrammingError as e:
        if getattr(e.orig, "sqlstate", None) == "42501":  # insufficient_privilege
            raise PrivilegeError(
                "le rôle des migrations ne peut pas créer de rôle : donnez-lui CREATEROLE le "
                f"temps de l'installation, ou créez {role} à la main"
            ) from None
        raise


def app_role_problems(conn: sa.Connection, role: str) -> list[str]:
    """What *role* may do beyond the application's needs (empty: nothing); PostgreSQL only.

    Read from the catalogue as PostgreSQL decides it (memberships and PUBLIC included), after
    `grant_app_role`: powers a grant cannot take back (role attributes, memberships, ownership)
    and privileges granted outside this module.
    """
    found = conn.execute(
        sa.text(
            "SELECT oid, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
            "rolbypassrls FROM pg_roles WHERE rolname = :r"
        ),
        {"r": role},
    ).first()
    if found is None:
        return [f"le rôle {role} n'existe pas"]
    oid = found.oid
    problems: list[str] = []
    if role == conn.execute(sa.text("SELECT current_user")).scalar_one():
        problems.append("c'est le rôle propriétaire des tables, celui des migrations")
    problems += [
        f"il a l'attribut {name}"
        for column, name in _FORBIDDEN_ATTRIBUTES.items()
        if getattr(found, column)
    ]
    if not found.rolcanlogin:
        problems.append("il ne peut pas se connecter (NOLOGIN)")
    problems += [
        f"il est membre du rôle {name}"
        for (name,) in conn.execute(
            sa.text(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "WHERE m.member = :oid ORDER BY r.rolname"
            ),
            {"oid": oid},
        )
    ]
    owned = conn.execute(
        sa.text(
            "SELECT (SELECT count(*) FROM pg_database "
            "        WHERE datdba = :oid AND datname = current_database()), "
            "(SELECT count(*) FROM pg_namespace WHERE nspowner = :oid), "
            "(SELECT count(*) FROM pg_class WHERE relowner = :oid), "
            "(SELECT count(*) FROM pg_proc WHERE proowner = :oid)"
        ),
        {"oid": oid},
    ).one()
    kinds = ("la base de données", "schéma(s)", "table(s)", "fonction(s)")
    for count, what in zip(owned, kinds, strict=True):
        if count:
            problems.append(f"il possède {what} ({count})")
    if conn.execute(
        sa.text("SELECT has_database_privilege(:r, current_database(), 'CREATE')"), {"r": role}
    ).scalar_one():
        problems.append("il peut créer des schémas dans la base")
    if conn.execute(
        sa.text("SELECT has_schema_privilege(:r, current_schema(), 'CREATE')"), {"r": role}
    ).scalar_one():
        problems.append("il peut créer des tables dans le schéma")
    allowed_on: dict[str, set[str]] = {t: {"SELECT", "INSERT"} for t in APPEND_ONLY}
    allowed_on.update({t: {"SELECT"} for t in READ_ONLY})
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.relkind, p.privilege FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN unnest(CAST(:privileges AS text[])) AS p(privilege) "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
            "AND CASE WHEN c.relkind = 'S' "
            "    THEN p.privilege = ANY(CAST(:sequence_privileges AS text[])) "
            "         AND has_sequence_privilege(:r, c.oid, p.privilege) "
            "    ELSE p.privilege = ANY(CAST(:table_privileges AS text[])) "
            "         AND has_table_privilege(:r, c.oid, p.privilege) END "
            "ORDER BY c.relname, p.privilege"
        ),
        {
            "r": role,
            "privileges": sorted({*_TABLE_PRIVILEGES, *_SEQUENCE_PRIVILEGES}),
            "table_privileges": list(_TABLE_PRIVILEGES),
            "sequence_privileges": list(_SEQUENCE_PRIVILEGES),
        },
    )
    excess: dict[str, list[str]] = {}
    for table, kind, privilege in rows:
        allowed = (
            {"USAGE", "SELECT"}
            if kind == "S"
            else allowed_on.get(table, {"SELECT", "INSERT", "UPDATE", "DELETE"})
        )
        if privilege not in allowed:
            excess.setdefault(privilege, []).append(table)
    for privilege, tables in sorted(excess.items()):
        shown = ", ".join(tables[:5]) + (f"… ({len(tables)} en tout)" if len(tables) > 5 else "")
        problems.append(f"il a {privilege} sur {shown}")
    return problems


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
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE USAGE, SELECT ON SEQUENCES "  # noqa: S608 - see above
        f"FROM {quoted}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}",
        f"REVOKE USAGE ON SCHEMA {schema} FROM {quoted}",
    ):
        conn.exec_driver_sql(statement)
