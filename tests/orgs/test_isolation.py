"""The isolation rule: spaces_of(user) and who may address whom."""

from __future__ import annotations

from portal.accounts.models import AccountStatus, User, UserRole
from portal.orgs.models import FtTerritory, Organisation, OrgKind
from portal.orgs.permissions import can_see_space, is_national, may_exchange, spaces_of


def _org(kind: OrgKind, dep: str | None = None, territory: tuple[str, ...] = ()) -> Organisation:
    org = Organisation(
        id=f"{kind}-{dep}-{'-'.join(territory)}", kind=kind, name=str(kind), departement_code=dep
    )
    org.territory = [FtTerritory(departement_code=c) for c in territory]
    return org


def _user(org: Organisation, status: AccountStatus = AccountStatus.ACTIVE) -> User:
    user = User(id="u", organisation_id=org.id, email="a@b.fr", full_name="A B", status=status)
    user.organisation = org
    user.role_rows = [UserRole(role="agent")]
    return user


CD62 = _org(OrgKind.DEPARTEMENT, "62")
CD59 = _org(OrgKind.DEPARTEMENT, "59")
PROVIDER62 = _org(OrgKind.PRESTATAIRE, "62")
FT_HDF = _org(OrgKind.FRANCE_TRAVAIL, territory=("59", "62"))
FT_NICE = _org(OrgKind.FRANCE_TRAVAIL, territory=("06",))
PLATFORM = _org(OrgKind.PLATEFORME)


def test_each_kind_of_organisation_sees_its_spaces_only() -> None:
    assert spaces_of(_user(CD62)) == {"62"}
    assert spaces_of(_user(PROVIDER62)) == {"62"}
    assert spaces_of(_user(FT_HDF)) == {"59", "62"}
    assert spaces_of(_user(FT_NICE)) == {"06"}
    assert spaces_of(_user(PLATFORM)) == frozenset()


def test_inactive_or_missing_user_sees_nothing() -> None:
    for status in (AccountStatus.PENDING, AccountStatus.SUSPENDED, AccountStatus.REVOKED):
        assert spaces_of(_user(CD62, status)) == frozenset()
    assert spaces_of(None) == frozenset()


def test_provider_of_62_cannot_see_space_of_59() -> None:
    assert not can_see_space(_user(PROVIDER62), "59")
    assert can_see_space(_user(PROVIDER62), "62")
    assert not can_see_space(_user(PROVIDER62), None)


def test_only_a_france_travail_structure_flagged_national_is_national() -> None:
    national = _org(OrgKind.FRANCE_TRAVAIL, territory=("59",))
    national.is_national = True
    flagged_departement = _org(OrgKind.DEPARTEMENT, "59")
    flagged_departement.is_national = True

    assert is_national(national)
    assert not is_national(flagged_departement)
    assert not is_national(FT_HDF)


def test_conventions_on_who_may_address_whom() -> None:
    # France Travail and the département's SLAI, both ways
    assert may_exchange(FT_HDF, CD62, "62") and may_exchange(CD62, FT_HDF, "62")
    # The SLAI and its mandated provider, both ways
    assert may_exchange(CD62, PROVIDER62, "62") and may_exchange(PROVIDER62, CD62, "62")
    # A provider never directly with France Travail
    assert not may_exchange(PROVIDER62, FT_HDF, "62") and not may_exchange(FT_HDF, PROVIDER62, "62")
    # Nor with itself: it addresses the SLAI that mandates it (#12)
    assert not may_exchange(PROVIDER62, PROVIDER62, "62")
    # Inside a département or a France Travail structure, colleagues may address each other
    assert may_exchange(CD62, CD62, "62") and may_exchange(FT_HDF, FT_HDF, "62")
    # Never across spaces, never the platform
    assert not may_exchange(CD62, FT_HDF, "59")
    assert not may_exchange(CD59, FT_HDF, "62")
    assert not may_exchange(FT_NICE, CD62, "62")
    assert not may_exchange(PLATFORM, CD62, "62")
