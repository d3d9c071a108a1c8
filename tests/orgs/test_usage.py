"""Usage statistics: a built month's figures exactly, Paris month boundaries, who sees which
organisation (404 outside), the French CSV (`filr orgs stats`: tests/cli/test_orgs_stats.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import pytest
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import Role
from portal.api.models import ApiToken
from portal.db import db, new_id
from portal.deposits.models import Deposit, DepositFile, DepositRecipient, DownloadReceipt
from portal.flows.models import FlowDeposit
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.usage import CSV_HEADERS, Month, UsageRow, usage
from tests.factories import Account, Cast, Factory, member, org

JANUARY = Month(2027, 1)
NOW = datetime(2027, 2, 15, 12, 0, tzinfo=UTC)


@dataclass
class StatsWorld(Cast):
    """Départements 62 and 59, their providers, France Travail 62, the platform, the national
    structure; managers, officers, agents."""

    cd62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    cd59: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 59", "59")]
    ft62: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT 62", territory=("62",))]
    provider62: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso 62", "62")]
    provider59: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso 59", "59")]
    platform: Annotated[str, org(OrgKind.PLATEFORME, "Plateforme", None)]
    national: Annotated[
        str, org(OrgKind.FRANCE_TRAVAIL, "FT nationale", territory=("75",), national=True)
    ]
    agent62: Annotated[Account, member("cd62", Role.AGENT)]
    agent62b: Annotated[Account, member("cd62", Role.AGENT)]
    manager62: Annotated[Account, member("cd62", Role.GESTIONNAIRE)]
    officer62: Annotated[Account, member("cd62", Role.SECURITE)]
    tech62: Annotated[Account, member("cd62", Role.TECHNICIEN)]
    agent59: Annotated[Account, member("cd59", Role.AGENT)]
    adviser_ft: Annotated[Account, member("ft62", Role.AGENT)]
    tech_ft: Annotated[Account, member("ft62", Role.TECHNICIEN)]
    manager_ft: Annotated[Account, member("ft62", Role.GESTIONNAIRE)]
    referent62: Annotated[Account, member("provider62", Role.AGENT)]
    manager_provider62: Annotated[Account, member("provider62", Role.GESTIONNAIRE)]
    admin: Annotated[Account, member("platform", Role.ADMIN)]
    officer_national: Annotated[Account, member("national", Role.SECURITE)]


@pytest.fixture
def sw(factory: Factory) -> StatsWorld:
    """The cast of these tests."""
    return StatsWorld.build(factory)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _login(app: Flask, who: Account, at: datetime, *, failed: bool = False) -> None:
    with app.app_context():
        audit.record(
            db.session,
            AuditAction.AUTH_LOGIN_FAILURE if failed else AuditAction.AUTH_LOGIN_SUCCESS,
            actor=audit.Actor(who.id, who.org_id),
            outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
            at=at,
        )
        db.session.commit()


def _deposit(
    app: Flask,
    sender: Account,
    at: datetime | None,
    *,
    to_org: str | None = None,
    to_user: str | None = None,
    departement: str = "62",
    category: str = "document",
) -> str:
    """A deposit published at *at* (a draft when None) to an organisation or an account."""
    created = at or utc(2027, 1, 5, 8)
    with app.app_context():
        deposit = Deposit(
            departement_code=departement,
            category=category,
            title="Dépôt de test",
            sender_id=sender.id,
            sender_org_id=sender.org_id,
            status="available" if at else "draft",
            created_at=created,
            published_at=at,
            expires_at=created + timedelta(days=30),
        )
        if to_org or to_user:
            deposit.recipients = [DepositRecipient(organisation_id=to_org, user_id=to_user)]
        db.session.add(deposit)
        db.session.commit()
        return deposit.id


def _download(app: Flask, who: Account, deposit_id: str, at: datetime) -> None:
    with app.app_context():
        file = DepositFile(
            deposit_id=deposit_id,
            object_key=new_id(),
            filename="piece.pdf",
            content_type="application/pdf",
            size=10,
            sha256="0" * 64,
        )
        db.session.add(file)
        db.session.flush()
        db.session.add(
            DownloadReceipt(
                deposit_id=deposit_id, file_id=file.id, user_id=who.id, downloaded_at=at
            )
        )
        db.session.commit()


def _flow(
    app: Flask, sender: Account, flow_type: str, period: date, at: datetime, *, valid: bool = True
) -> None:
    """A flow of *sender* for *period*, deposited at *at* (refused when not *valid*)."""
    deposit_id = _deposit(app, sender, at if valid else None, category="flux_xml", departement="62")
    with app.app_context():
        db.session.add(
            FlowDeposit(
                deposit_id=deposit_id,
                departement_code="62",
                sender_org_id=sender.org_id,
                flow_type=flow_type,
                period_start=period,
                status="valid" if valid else "rejected",
                error_count=0 if valid else 2,
                created_at=at,
            )
        )
        db.session.commit()


def _api_use(app: Flask, who: Account, at: datetime) -> None:
    with app.app_context():
        db.session.add(
            ApiToken(
                user_id=who.id,
                name="script",
                token_prefix="abcd1234",
                token_digest=new_id() * 2,
                created_at=at - timedelta(days=10),
                expires_at=at + timedelta(days=300),
                last_used_at=at,
            )
        )
        db.session.commit()


def build_january(app: Flask, sw: StatsWorld) -> None:
    """What was done in January 2027 (and around it, to be left out)."""
    # Log-ins: 00:30 in Paris on 1 January is January; 00:30 on 1 February is not.
    _login(app, sw.agent62, utc(2026, 12, 31, 23, 30))
    _login(app, sw.agent62, utc(2027, 1, 12, 9))
    _login(app, sw.agent62, utc(2027, 1, 31, 22, 30))  # 23:30 in Paris, 31 January
    _login(app, sw.agent62, utc(2027, 1, 31, 23, 30))  # 00:30 in Paris, 1 February
    _login(app, sw.manager62, utc(2027, 1, 8, 9), failed=True)  # a failure is no use
    _login(app, sw.manager62, utc(2026, 12, 31, 22, 30))  # 23:30 in Paris, 31 December
    _login(app, sw.referent62, utc(2027, 1, 20, 14))
    _login(app, sw.adviser_ft, utc(2027, 1, 21, 8))
    _login(app, sw.tech_ft, utc(2027, 1, 21, 9))
    _api_use(app, sw.agent62b, utc(2027, 1, 25, 10))  # API only, no log-in
    # Deposits: 62 → France Travail twice in January (and once just after it), 62 → the
    # provider's referent by name, France Travail → 62, one draft never sent.
    to_ft = _deposit(app, sw.agent62, utc(2027, 1, 12, 10), to_org=sw.ft62)
    _deposit(app, sw.agent62, utc(2027, 1, 31, 22, 59), to_org=sw.ft62)
    _deposit(app, sw.agent62, utc(2027, 1, 31, 23, 1), to_org=sw.ft62)  # February in Paris
    _deposit(app, sw.agent62, utc(2027, 1, 13, 10), to_user=sw.referent62.id)
    _deposit(app, sw.adviser_ft, utc(2027, 1, 14, 10), to_org=sw.cd62)
    _deposit(app, sw.agent62, None, to_org=sw.ft62)
    # Downloads: France Travail twice in January, once in February
    _download(app, sw.adviser_ft, to_ft, utc(2027, 1, 12, 11))
    _download(app, sw.adviser_ft, to_ft, utc(2027, 1, 13, 11))
    _download(app, sw.adviser_ft, to_ft, utc(2027, 2, 2, 11))
    # Flows of 62 for January: CGPEM refused once, then on time (deadline 22/01 17:00);
    # France Travail's PECGM late (due 18/01), PECDH of the week of the 4th on time,
    # the three other weeks never deposited.
    _flow(app, sw.tech62, "CGPEM", date(2027, 1, 1), utc(2027, 1, 19, 9), valid=False)
    _flow(app, sw.tech62, "CGPEM", date(2027, 1, 1), utc(2027, 1, 20, 9))
    _flow(app, sw.tech_ft, "PECGM", date(2027, 1, 1), utc(2027, 1, 19, 9))
    _flow(app, sw.tech_ft, "PECDH", date(2027, 1, 4), utc(2027, 1, 7, 9))


def _figures(app: Flask, month: Month = JANUARY) -> dict[str, UsageRow]:
    with app.app_context():
        every = list(db.session.query(Organisation).all())
        return {r.organisation.name: r for r in usage(db.session, every, month, now=NOW)}


def test_the_figures_of_a_built_month_are_exactly_what_was_done(app: Flask, sw: StatsWorld) -> None:
    # Given a month of log-ins, API use, deposits, downloads and flows
    build_january(app, sw)
    # When the figures of January are computed
    figures = _figures(app)
    # Then each organisation's are exactly those
    cd62, ft62, provider62 = figures["CD 62"], figures["FT 62"], figures["Asso 62"]
    assert (cd62.logins, cd62.active_accounts) == (3, 2)  # agent62 (3 log-ins), agent62b (API)
    # 2 to France Travail and 1 to the referent in January, and the flow CGPEM (valid)
    assert (cd62.deposits_sent, cd62.deposits_received, cd62.downloads) == (4, 1, 0)
    assert (cd62.flows_on_time, cd62.flows_late, cd62.flows_refused) == (1, 0, 1)
    assert (ft62.logins, ft62.active_accounts) == (2, 2)
    assert (ft62.deposits_sent, ft62.deposits_received, ft62.downloads) == (3, 2, 2)
    assert (ft62.flows_on_time, ft62.flows_late, ft62.flows_refused) == (1, 4, 0)
    assert (provider62.logins, provider62.active_accounts, provider62.deposits_received) == (
        1,
        1,
        1,
    )
    # 59 did nothing: its CGPEM is late; the others have no flow to send
    cd59 = figures["CD 59"]
    assert (cd59.logins, cd59.active_accounts, cd59.deposits_sent) == (0, 0, 0)
    assert (cd59.flows_on_time, cd59.flows_late, cd59.flows_refused) == (0, 1, 0)
    for name in ("Asso 59", "Plateforme", "FT nationale"):
        row = figures[name]
        assert (row.logins, row.deposits_sent, row.flows_late) == (0, 0, 0)


def test_month_boundaries_are_midnight_in_paris(app: Flask, sw: StatsWorld) -> None:
    # Given log-ins at 23:30 UTC on the last day of a winter month and of a summer month
    _login(app, sw.agent62, utc(2027, 1, 31, 23, 30))  # 00:30 on 1 February in Paris (UTC+1)
    _login(app, sw.agent62, utc(2027, 7, 31, 22, 30))  # 00:30 on 1 August in Paris (UTC+2)
    _login(app, sw.agent62, utc(2027, 7, 31, 21, 30))  # 23:30 on 31 July in Paris
    # Then each counts in the month it fell in on the Paris clock
    assert _figures(app, Month(2027, 1))["CD 62"].logins == 0
    assert _figures(app, Month(2027, 2))["CD 62"].logins == 1
    assert _figures(app, Month(2027, 7))["CD 62"].logins == 1
    assert _figures(app, Month(2027, 8))["CD 62"].logins == 1
    assert JANUARY.starts_at == utc(2026, 12, 31, 23)
    assert Month(2027, 7).ends_at == utc(2027, 7, 31, 22)


def test_the_default_month_is_the_last_complete_one_in_paris() -> None:
    assert Month.last_complete(utc(2027, 2, 28, 23, 30)) == Month(2027, 2)  # 1 March in Paris
    assert Month.last_complete(utc(2027, 2, 28, 22, 30)) == Month(2027, 1)
    assert Month.last_complete(utc(2027, 1, 10)) == Month(2026, 12)


def _rows_seen(client: FlaskClient, query: str = "") -> str:
    response = client.get(f"/statistiques?mois=2027-01{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_departement_manager_sees_its_organisation_and_its_providers_only(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient]
) -> None:
    # Given the manager of 62
    client = login_as(sw.manager62)
    # When it opens the statistics
    page = _rows_seen(client)
    # Then it sees 62 and the provider of 62, and no other organisation
    assert f'id="org-{sw.cd62}"' in page and f'id="org-{sw.provider62}"' in page
    for other in (sw.cd59, sw.ft62, sw.provider59, sw.platform, sw.national):
        assert f'id="org-{other}"' not in page
    # And asking for another organisation by id is a 404, as an unknown one is
    for other in (sw.cd59, sw.ft62, sw.provider59, "0" * 32, "nope"):
        assert client.get(f"/statistiques?mois=2027-01&organisation={other}").status_code == 404
        assert client.get(f"/statistiques.csv?organisation={other}").status_code == 404
    assert f'id="org-{sw.provider62}"' in _rows_seen(client, f"&organisation={sw.provider62}")


def test_a_provider_and_france_travail_managers_see_their_own_organisation_only(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient]
) -> None:
    provider = login_as(sw.manager_provider62)
    page = _rows_seen(provider)
    assert f'id="org-{sw.provider62}"' in page and f'id="org-{sw.cd62}"' not in page
    assert provider.get(f"/statistiques?organisation={sw.cd62}").status_code == 404
    ft = login_as(sw.manager_ft)
    page = _rows_seen(ft)
    assert f'id="org-{sw.ft62}"' in page and f'id="org-{sw.cd62}"' not in page


def test_an_officer_of_62_sees_62_and_an_agent_sees_nothing(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient]
) -> None:
    page = _rows_seen(login_as(sw.officer62))
    assert f'id="org-{sw.cd62}"' in page and f'id="org-{sw.cd59}"' not in page
    agent = login_as(sw.agent62)
    assert agent.get("/statistiques").status_code == 404
    assert agent.get("/statistiques.csv").status_code == 404


@pytest.mark.parametrize("who", ["admin", "officer_national"])
def test_the_platform_and_the_national_officers_see_every_organisation(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient], who: str
) -> None:
    client = login_as(getattr(sw, who))
    page = _rows_seen(client)
    for org_id in (sw.cd62, sw.cd59, sw.ft62, sw.provider62, sw.provider59, sw.platform):
        assert f'id="org-{org_id}"' in page
    assert "<caption>Utilisation par organisation — janvier 2027</caption>" in page
    assert 'tabindex="0" id="usage"' in page
    assert client.get(f"/statistiques?mois=2027-01&organisation={sw.cd59}").status_code == 200


def test_the_page_shows_french_numbers_and_the_csv_is_french(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient]
) -> None:
    # Given January built, and 1 234 more log-ins of 59 the same day
    build_january(app, sw)
    with app.app_context():
        for _ in range(1234):
            audit.record(
                db.session,
                AuditAction.AUTH_LOGIN_SUCCESS,
                actor=audit.Actor(sw.agent59.id, sw.cd59),
                at=utc(2027, 1, 5, 9),
            )
        db.session.commit()
    client = login_as(sw.admin)
    # Then the page groups thousands the French way
    page = _rows_seen(client)
    assert "<td>1\u202f234</td>" in page
    # And the CSV: BOM, `;`, French headers, one line per organisation
    response = client.get("/statistiques.csv?mois=2027-01")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="statistiques-2027-01.csv"' in response.headers["Content-Disposition"]
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8")[1:]
    lines = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert lines[0] == list(CSV_HEADERS) and lines[0][:2] == ["Mois", "Organisation"]
    by_name = {line[1]: line for line in lines[1:]}
    assert by_name["CD 62"] == [
        "2027-01",
        "CD 62",
        "Département",
        "62",
        "2",
        "3",
        "4",
        "1",
        "0",
        "1",
        "0",
        "1",
    ]
    assert by_name["CD 59"][5] == "1234"
    assert len(lines) == 1 + 7


def test_a_formula_in_an_organisation_name_is_neutralised_in_the_csv(
    app: Flask, factory: Factory, login_as: Callable[[Account], FlaskClient]
) -> None:
    # Given an organisation whose name starts like a formula
    org_id = factory.org(OrgKind.DEPARTEMENT, "62", name='=HYPERLINK("http://x")')
    admin = factory.user(factory.org(OrgKind.PLATEFORME, None, name="Plateforme"), (Role.ADMIN,))
    # When the CSV is exported
    text = login_as(admin).get("/statistiques.csv?mois=2027-01").get_data(as_text=True)
    # Then the cell is quoted, shown and never evaluated
    assert "'=HYPERLINK" in text and ";=HYPERLINK" not in text and org_id


def test_managers_officers_and_the_operator_find_the_statistics_where_they_look(
    app: Flask, sw: StatsWorld, login_as: Callable[[Account], FlaskClient]
) -> None:
    # The account management page, the security workspace's tabs, the operator's home page
    for who, path in (
        (sw.manager62, "/gestion/comptes"),
        (sw.officer62, "/securite"),
        (sw.officer_national, "/securite"),
        (sw.admin, "/"),
    ):
        page = login_as(who).get(path).get_data(as_text=True)
        assert 'href="/statistiques"' in page, path
    # An agent is shown no such link
    assert 'href="/statistiques"' not in login_as(sw.agent62).get("/").get_data(as_text=True)
