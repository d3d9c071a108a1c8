"""What the tests build: accounts, organisations, the casts of the functional tests, API scripts.

Fixtures stay in the conftest files and hand these out (`factory`, `world`, `fw`, `api_for`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Self, get_type_hints
from urllib.parse import quote

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.accounts.models import AccountStatus, Role, User
from portal.db import db, new_id, utcnow
from portal.orgs.models import FtTerritory, Organisation, OrgKind
from tests.support.leaks import LEAKS

STRONG_PASSWORD = "correct horse battery staple 42"  # 31 chars: fine for every role
DEFAULT_NAME = "Alex Test"
LEAKS.remember("factory password", STRONG_PASSWORD, lasting=True)


@dataclass
class Account:
    """A test account with its secrets."""

    id: str
    email: str
    password: str
    totp_secret: str
    org_id: str

    def code(self, offset_steps: int = 0) -> str:
        import time

        return pyotp.TOTP(self.totp_secret).at(time.time() + 30 * offset_steps)


class Factory:
    """Builds organisations and accounts directly in the database of *app*."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._n = 0

    def org(
        self,
        kind: OrgKind = OrgKind.DEPARTEMENT,
        departement: str | None = "62",
        territory: tuple[str, ...] = (),
        name: str | None = None,
        national: bool = False,
    ) -> str:
        self._n += 1
        with self.app.app_context():
            org = Organisation(
                kind=kind,
                name=name or f"Organisation {self._n} {kind}",
                departement_code=departement
                if kind in (OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE)
                else None,
                is_national=national,
            )
            org.territory = [FtTerritory(departement_code=c) for c in territory]
            db.session.add(org)
            db.session.commit()
            return org.id

    def user(
        self,
        org_id: str,
        roles: tuple[Role, ...] = (Role.AGENT,),
        email: str | None = None,
        name: str = DEFAULT_NAME,
        status: AccountStatus = AccountStatus.ACTIVE,
        password: str = STRONG_PASSWORD,
    ) -> Account:
        from portal.accounts.models import UserRole
        from portal.container import services

        self._n += 1
        email = email or f"user{self._n}@example.org"
        secret = pyotp.random_base32()
        LEAKS.remember("TOTP secret", secret)
        LEAKS.remember("factory password", password, lasting=True)
        with self.app.app_context():
            svc = services()
            user_id = new_id()
            user = User(
                id=user_id,
                organisation_id=org_id,
                email=email,
                full_name=name,
                status=status,
                password_hash=svc.argon2.hash(password),
                totp_secret=svc.secret_box.seal(secret, user_id),
                activated_at=utcnow() if status != AccountStatus.PENDING else None,
            )
            user.role_rows = [UserRole(role=str(r)) for r in roles]
            db.session.add(user)
            db.session.commit()
            return Account(user.id, email, password, secret, org_id)


# --- casts: the organisations and accounts a group of tests shares ----------------------------


@dataclass(frozen=True)
class _Org:
    kind: OrgKind
    name: str
    departement: str | None
    territory: tuple[str, ...]
    national: bool

    def make(self, factory: Factory, _built: Mapping[str, Any]) -> str:
        return factory.org(
            self.kind, self.departement, self.territory, name=self.name, national=self.national
        )


@dataclass(frozen=True)
class _Member:
    org: str
    roles: tuple[Role, ...]
    name: str
    email: str | None

    def make(self, factory: Factory, built: Mapping[str, Any]) -> Account:
        return factory.user(built[self.org], self.roles, email=self.email, name=self.name)


def org(
    kind: OrgKind,
    name: str,
    departement: str | None = None,
    *,
    territory: tuple[str, ...] = (),
    national: bool = False,
) -> _Org:
    """An organisation of a cast; the field holds its id."""
    return _Org(kind, name, departement, territory, national)


def member(org: str, *roles: Role, name: str = DEFAULT_NAME, email: str | None = None) -> _Member:
    """An account of a cast, of the organisation of the field *org*."""
    return _Member(org, roles, name, email)


class Cast:
    """Organisations and accounts declared as `Annotated` fields, built in declaration order.

    The order matters: the factory numbers what it builds (`user5@example.org`).
    """

    @classmethod
    def build(cls, factory: Factory) -> Self:
        """Build every organisation and account of the cast in the database of the factory."""
        hints = get_type_hints(cls, include_extras=True)
        built: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]  # subclasses are dataclasses
            spec: _Org | _Member = hints[field.name].__metadata__[0]
            built[field.name] = spec.make(factory, built)
        return cls(**built)


@dataclass
class World(Cast):
    """Départements 62 and 59 with their SLAI, France Travail and a provider of 62."""

    cd62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    cd59: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 59", "59")]
    ft62: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT 62", territory=("62",))]
    provider62: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso 62", "62")]
    agent62: Annotated[Account, member("cd62", Role.AGENT, name="Agnès Soixantedeux")]
    agent62b: Annotated[Account, member("cd62", Role.AGENT, name="Bruno Collegue")]
    manager62: Annotated[Account, member("cd62", Role.GESTIONNAIRE, name="Gina Gestion")]
    agent59: Annotated[
        Account, member("cd59", Role.AGENT, Role.TECHNICIEN, name="Nina Cinquanteneuf")
    ]
    adviser_ft: Annotated[Account, member("ft62", Role.AGENT, name="Conseil Ler")]
    technicien_ft: Annotated[Account, member("ft62", Role.TECHNICIEN, name="Tech Ft")]
    referent62: Annotated[Account, member("provider62", Role.AGENT, name="Ref Erent")]


@dataclass
class OfficerWorld(Cast):
    """Organisations of 62 and 59, a provider of 62, France Travail, and their accounts; a
    security officer of each, and one of the national structure."""

    org62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    org59: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 59", "59")]
    provider62: Annotated[str, org(OrgKind.PRESTATAIRE, "Association 62", "62")]
    ft62: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT DT 62", territory=("62",))]
    ft_national: Annotated[
        str, org(OrgKind.FRANCE_TRAVAIL, "FT DSI nationale", territory=("75",), national=True)
    ]
    agent62: Annotated[Account, member("org62", Role.AGENT, email="agent62@example.org")]
    gest62: Annotated[Account, member("org62", Role.GESTIONNAIRE, email="gest62@example.org")]
    agent59: Annotated[Account, member("org59", Role.AGENT, email="agent59@example.org")]
    provider_agent62: Annotated[
        Account, member("provider62", Role.AGENT, email="presta62@example.org")
    ]
    officer62: Annotated[Account, member("org62", Role.SECURITE, email="secu62@example.org")]
    officer59: Annotated[Account, member("org59", Role.SECURITE, email="secu59@example.org")]
    officer_ft62: Annotated[Account, member("ft62", Role.SECURITE, email="secu-ft62@example.org")]
    officer_national: Annotated[
        Account, member("ft_national", Role.SECURITE, email="secu-national@example.org")
    ]


@dataclass
class FlowWorld(Cast):
    """Départements 62 and 59, France Travail for both, a national structure, technicians."""

    cd62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    cd59: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 59", "59")]
    ft: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT Hauts-de-France", territory=("59", "62"))]
    national: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT DSI nationale", national=True)]
    tech62: Annotated[Account, member("cd62", Role.TECHNICIEN, email="tech62@cd62.example.org")]
    tech62b: Annotated[Account, member("cd62", Role.TECHNICIEN, email="tech62b@cd62.example.org")]
    agent62: Annotated[Account, member("cd62", Role.AGENT, email="agent62@cd62.example.org")]
    tech59: Annotated[Account, member("cd59", Role.TECHNICIEN, email="tech59@cd59.example.org")]
    tech_ft: Annotated[Account, member("ft", Role.TECHNICIEN, email="tech@ft.example.org")]
    tech_national: Annotated[
        Account, member("national", Role.TECHNICIEN, email="tech@national.example.org")
    ]


# --- API scripts ------------------------------------------------------------------------------


@dataclass
class Api:
    """A script: a bare client (no cookie ever) that sends a bearer token."""

    client: FlaskClient
    token: str

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(headers or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self.client.get(path, headers=self._headers(headers), **kw)

    def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self.client.post(path, headers=self._headers(headers), **kw)

    def put(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
        return self.client.put(path, headers=self._headers(headers), **kw)

    def upload(self, deposit_id: str, name: str, content: bytes) -> TestResponse:
        return self.post(
            f"/api/v1/deposits/{deposit_id}/files",
            data=content,
            headers={"X-Filename": quote(name), "Content-Type": "application/octet-stream"},
        )
