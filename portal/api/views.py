"""REST API `/api/v1`: deposits for the technicians' scripts, authenticated by bearer token.

HTTP only: every state change goes through the deposit services the web pages use, so that the
isolation check, the counters, the receipts and the audit trail are the same on both sides.
Resources are generic (a deposit carries a `category`): a new flow type is a new category, not
a new set of routes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

import storage
from portal.accounts.models import User
from portal.api import services as tokens
from portal.api.auth import API_BLUEPRINT, current_grant
from portal.api.models import ApiScope, ApiToken
from portal.api.openapi import openapi_document
from portal.api.problems import ApiProblem, problem
from portal.auth.throttle import RateLimit
from portal.container import services
from portal.db import db, is_database_unavailable
from portal.deposits import downloads, notifications
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.listing import PAGE_SIZE, Filters, decode_cursor, list_deposits
from portal.deposits.models import (
    CATEGORY_LABELS,
    Category,
    Deposit,
    DepositStatus,
    Reason,
)
from portal.deposits.permissions import categories_of, is_sender_side
from portal.deposits.views import UPLOAD_CHUNK, streamed
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation
from portal.orgs.permissions import spaces_of
from portal.web import audit_context, server_sends_buffers, the_user

bp = Blueprint(API_BLUEPRINT, __name__, url_prefix="/api/v1")

P = ParamSpec("P")
R = TypeVar("R")

# The scope each endpoint requires (None: any valid token), read by the OpenAPI test.
REQUIRED_SCOPES: dict[str, ApiScope | None] = {}

MAX_PAGE_SIZE = 100
NOT_FOUND = "Ce dépôt n'existe pas ou vous n'y avez pas accès."


# --- plumbing ------------------------------------------------------------------------------


def requires(scope: ApiScope | None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Refuse the request (403, RFC 6750 `insufficient_scope`) unless the token holds *scope*."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        REQUIRED_SCOPES[f"{bp.name}.{view.__name__}"] = scope

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            grant = current_grant()
            if grant is None:  # the gate lets no such request through: defence in depth
                raise ApiProblem(401, "Authentification requise.")
            _enforce_rate_limit(grant)
            if scope is not None and scope not in grant.scopes:
                raise ApiProblem(
                    403,
                    f"Ce jeton n'a pas la portée « {scope} » nécessaire à cette opération.",
                    code="insufficient_scope",
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer realm="filr-api", error="insufficient_scope", scope="{scope}"'
                        )
                    },
                )
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _enforce_rate_limit(grant: tokens.Grant) -> None:
    # A stolen token must not empty a space in a minute: requests are counted per token,
    # across servers (Redis when configured), and refused with 429 beyond the setting.
    svc = services()
    verdict = RateLimit(svc.throttle.store).hit(
        "api:" + grant.token_id, svc.settings.api_requests_per_minute
    )
    if not verdict.allowed:
        raise ApiProblem(
            429,
            f"Trop de requêtes pour ce jeton : réessayez dans {verdict.retry_after} secondes.",
            code="rate_limited",
            headers={"Retry-After": str(verdict.retry_after)},
        )


@bp.errorhandler(ApiProblem)
def _api_problem(e: ApiProblem) -> Response:
    db.session.rollback()
    return e.response()


_HTTP_DETAILS = {
    400: "La requête n'a pas pu être comprise.",
    404: NOT_FOUND,
    405: "Cette méthode n'est pas possible sur cette ressource.",
    413: "Le contenu envoyé dépasse la taille autorisée.",
}


@bp.errorhandler(HTTPException)
def _http_problem(e: HTTPException) -> Response:
    db.session.rollback()
    status = e.code or 500
    if status == 403:
        status = 404  # forbidden and unknown look the same
    # A body cut off by the size limit while it streams is the upload's own 413.
    code = deposits.FileTooLarge.code if status == 413 else None
    return problem(status, _HTTP_DETAILS.get(status, "La requête n'a pas abouti."), code=code)


def _deposit_or_404(user: User, deposit_id: str) -> Deposit:
    # THE isolation check (audited); nothing else is looked at before it passes.
    deposit = deposits.find_deposit(db.session, user, deposit_id, audit_context())
    if deposit is None:
        raise ApiProblem(404, NOT_FOUND)
    return deposit


def _space_or_404(user: User, departement: str) -> str:
    if departement not in spaces_of(user):
        raise ApiProblem(404, "Cet espace départemental n'existe pas ou vous n'y avez pas accès.")
    return departement


def _invalid(errors: list[dict[str, str]]) -> ApiProblem:
    return ApiProblem(
        422,
        errors[0]["detail"] if len(errors) == 1 else "La requête contient des erreurs.",
        code="invalid",
        extra={"errors": errors},
    )


# --- representations -----------------------------------------------------------------------


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _org(org: Organisation) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "kind": org.kind, "kind_label": org.kind_label}


def _person(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.full_name, "organisation": _org(user.organisation)}


def _status(deposit: Deposit) -> str:
    if deposit.status == DepositStatus.AVAILABLE and deposit.is_expired():
        return "expired"
    if deposit.is_held_for_scan:
        return "scan_pending"
    return deposit.status


def _deposit_summary(deposit: Deposit, sender: User | None) -> dict[str, Any]:
    return {
        "id": deposit.id,
        "departement": deposit.departement_code,
        "category": deposit.category,
        "category_label": deposit.category_label,
        "title": deposit.title,
        "status": _status(deposit),
        "status_label": deposit.status_label,
        "sender": _person(sender) if sender is not None else None,
        "created_at": _at(deposit.created_at),
        "published_at": _at(deposit.published_at),
        "expires_at": _at(deposit.expires_at),
        "max_downloads": deposit.max_downloads,
        "file_count": len(deposit.files),
        "url": url_for("api.deposit_show", deposit_id=deposit.id),
    }


def _deposit_full(user: User, deposit: Deposit) -> dict[str, Any]:
    sender = db.session.get(User, deposit.sender_id)
    org_ids = [r.organisation_id for r in deposit.recipients if r.organisation_id]
    orgs = {
        o.id: o
        for o in db.session.execute(
            sa.select(Organisation).where(Organisation.id.in_(org_ids))
        ).scalars()
    }
    receipts: list[dict[str, Any]] | None = None
    if is_sender_side(user, deposit):  # the acknowledgement of receipt is the sender's
        rows = downloads.receipts_of(db.session, deposit)
        receipts = [
            {"file_id": r.file_id, "user": _person(who), "downloaded_at": _at(r.downloaded_at)}
            for r, who in rows
        ]
    return {
        **_deposit_summary(deposit, sender),
        "reason": deposit.reason,
        "reason_label": deposit.reason_label,
        "recipients": [
            {
                "organisation": _org(orgs[r.organisation_id]) if r.organisation_id else None,
                "user_id": r.user_id,
            }
            for r in deposit.recipients
            if r.user_id or r.organisation_id in orgs
        ],
        "files": [
            {
                "id": f.id,
                "name": f.filename,
                "content_type": f.content_type,
                "size": f.size,
                "sha256": f.sha256,
                "created_at": _at(f.created_at),
                "destroyed": f.destroyed_at is not None,
                "content_url": url_for("api.file_content", deposit_id=deposit.id, file_id=f.id),
            }
            for f in deposit.files
        ],
        "receipts": receipts,
        "content_removal_pending": deposit.is_removal_pending,
    }


# --- who am I, whom can I address ----------------------------------------------------------


@bp.get("/me")
@requires(None)
def me() -> Response:
    """The token's owner, its spaces and categories, and the token itself."""
    user = the_user()
    grant = current_grant()
    assert grant is not None  # noqa: S101 - checked by @requires
    token = db.session.get(ApiToken, grant.token_id)
    assert token is not None  # noqa: S101 - the grant was built from it in this request
    return jsonify(
        {
            "id": user.id,
            "name": user.full_name,
            "email": user.email,
            "organisation": _org(user.organisation),
            "roles": sorted(str(r) for r in user.roles),
            "spaces": [{"code": c, "name": DEPARTEMENTS[c]} for c in sorted(spaces_of(user))],
            "categories": [
                {"code": str(c), "label": CATEGORY_LABELS[c]} for c in sorted(categories_of(user))
            ],
            "token": {
                "id": token.id,
                "name": token.name,
                "scopes": sorted(str(s) for s in token.scopes),
                "expires_at": _at(token.expires_at),
            },
        }
    )


@bp.get("/organisations")
@requires(None)
def organisations() -> Response:
    """Organisations the token's owner may address in one space (the possible recipients)."""
    user = the_user()
    departement = request.args.get("departement", "")
    if not departement:
        raise _invalid(
            [
                {
                    "parameter": "departement",
                    "detail": "Le paramètre « departement » est obligatoire.",
                }
            ]
        )
    _space_or_404(user, departement)
    orgs = deposits.recipient_choices(db.session, user, departement)
    return jsonify({"departement": departement, "items": [_org(o) for o in orgs]})


# --- deposits ------------------------------------------------------------------------------

_BOXES = {"all": "tous", "received": "recus", "sent": "envoyes"}
_STATUSES = {
    "available": "disponible",
    "expired": "expire",
    "withdrawn": "retire",
    "draft": "brouillon",
}
_SORTS = {"recent": "recent", "oldest": "ancien", "title": "titre"}
_LIST_PARAMS = frozenset(
    {"box", "departement", "category", "status", "sender_org", "q", "since", "until", "sort",
     "after", "limit"}
)  # fmt: skip


def _list_query(user: User, args: Mapping[str, str]) -> tuple[Filters, int]:
    """Parse the list's parameters strictly (a typo must not silently widen the answer) and
    translate them into the web list's filters."""
    errors: list[dict[str, str]] = []
    web: dict[str, str] = {"boite": "tous"}

    def fail(name: str, detail: str) -> None:
        errors.append({"parameter": name, "detail": detail})

    for name in sorted(set(args) - _LIST_PARAMS):
        fail(name, f"Paramètre inconnu : « {name} ».")
    for name, choices, web_name in (
        ("box", _BOXES, "boite"),
        ("status", _STATUSES, "statut"),
        ("sort", _SORTS, "tri"),
        ("category", {str(c): str(c) for c in Category}, "categorie"),
    ):
        if name in args:
            if args[name] in choices:
                web[web_name] = choices[args[name]]
            else:
                fail(name, f"« {name} » doit valoir : {', '.join(choices)}.")
    if "departement" in args:
        web["espace"] = _space_or_404(user, args["departement"])
    if "sender_org" in args:
        sender = args["sender_org"]
        if len(sender) == 32 and sender.isalnum():
            web["expediteur"] = sender
        else:
            fail("sender_org", "« sender_org » doit être l'identifiant d'une organisation.")
    if args.get("q"):
        web["q"] = args["q"]
    for name, web_name in (("since", "du"), ("until", "au")):
        if name in args:
            try:
                web[web_name] = date.fromisoformat(args[name]).isoformat()
            except ValueError:
                fail(name, f"« {name} » doit être une date AAAA-MM-JJ.")
    if "after" in args:
        # The listing's own parser: a cursor we did not emit is refused, never taken for the
        # first page (a script would loop for ever).
        if decode_cursor(args["after"]) is None:
            fail("after", "« after » n'est pas un curseur renvoyé par cette liste.")
        else:
            web["apres"] = args["after"]
    limit = PAGE_SIZE
    if "limit" in args:
        try:
            limit = int(args["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            fail("limit", f"« limit » doit être un entier entre 1 et {MAX_PAGE_SIZE}.")
    if errors:
        raise _invalid(errors)
    return Filters.from_args(web, user), limit


@bp.get("/deposits")
@requires(ApiScope.READ)
def deposits_list() -> Response:
    """Deposits the token's owner may see, filtered, one keyset page at a time."""
    user = the_user()
    filters, limit = _list_query(user, request.args)
    page = list_deposits(db.session, user, filters, limit=limit)
    next_url = None
    if page.next_cursor:
        args: dict[str, Any] = {**request.args, "after": page.next_cursor}
        next_url = url_for("api.deposits_list", **args)
    return jsonify(
        {
            "items": [_deposit_summary(d, page.senders.get(d.sender_id)) for d in page.deposits],
            "next": page.next_cursor,
            "next_url": next_url,
        }
    )


_NEW_DEPOSIT_FIELDS = {
    "departement": str,
    "category": str,
    "title": str,
    "reason": str,
    "recipients": list,
    "lifetime_days": int,
    "max_downloads": int,
}
_REQUIRED_FIELDS = ("departement", "category", "recipients")
_REASON_CODES = ", ".join(str(r) for r in Reason)
# The free-text message is gone (issue 15): a client still sending one learns what replaced it.
_NO_MESSAGE = (
    "Le message libre n'existe plus : les conventions limitent l'échange aux données prévues. "
    f"Indiquez au besoin un motif dans « reason » ({_REASON_CODES})."
)
_TYPE_NAMES = {str: "une chaîne de caractères", list: "une liste", int: "un entier"}


def _new_deposit(body: object) -> deposits.NewDeposit:
    """Parse the JSON body of a new deposit, collecting every error."""
    if not isinstance(body, dict):
        raise ApiProblem(
            400, "Le corps de la requête doit être un objet JSON.", code="invalid_json"
        )
    errors: list[dict[str, str]] = []
    for name in sorted(set(body) - set(_NEW_DEPOSIT_FIELDS)):
        if name == "message":
            if body["message"] not in (None, ""):
                errors.append({"pointer": "#/message", "detail": _NO_MESSAGE})
            continue
        errors.append({"pointer": f"#/{name}", "detail": f"Champ inconnu : « {name} »."})
    for name in _REQUIRED_FIELDS:
        if body.get(name) is None:
            errors.append({"pointer": f"#/{name}", "detail": f"« {name} » est obligatoire."})
    for name, kind in _NEW_DEPOSIT_FIELDS.items():
        value = body.get(name)
        # bool is an int in Python, never in JSON
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            errors.append(
                {"pointer": f"#/{name}", "detail": f"« {name} » doit être {_TYPE_NAMES[kind]}."}
            )
    recipients = body.get("recipients")
    if isinstance(recipients, list) and not all(isinstance(r, str) for r in recipients):
        errors.append(
            {"pointer": "#/recipients", "detail": "« recipients » : identifiants d'organisation."}
        )
    category = body.get("category")
    if isinstance(category, str) and category not in {str(c) for c in Category}:
        errors.append({"pointer": "#/category", "detail": "Catégorie inconnue."})
    elif category == Category.DOCUMENT and body.get("title") is None:
        errors.append(
            {"pointer": "#/title", "detail": "« title » est obligatoire pour un document."}
        )
    reason = body.get("reason")
    if isinstance(reason, str) and reason not in {str(r) for r in Reason}:
        errors.append(
            {"pointer": "#/reason", "detail": f"Motif inconnu : choisissez parmi {_REASON_CODES}."}
        )
    if errors:
        raise _invalid(errors)
    return deposits.NewDeposit(
        departement=body["departement"],
        category=Category(body["category"]),
        title=body.get("title") or "",
        reason=Reason(reason) if reason else None,
        recipient_org_ids=tuple(body["recipients"]),
        lifetime_days=body.get("lifetime_days"),
        max_downloads=body.get("max_downloads"),
    )


@bp.post("/deposits")
@requires(ApiScope.DEPOSIT)
def deposit_create() -> tuple[Response, int, dict[str, str]]:
    """Create a draft deposit; files are then uploaded one by one, and the draft published."""
    user = the_user()
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a deposit either
        body = None
    wanted = _new_deposit(body)
    try:
        deposit = deposits.create_draft(
            db.session,
            user,
            wanted,
            audit_context(),
            weekly_file_days=services().settings.weekly_file_lifetime_days,
        )
    except deposits.DepositError as e:
        if e.field:
            raise _invalid([{"pointer": f"#/{e.field}", "detail": str(e)}]) from None
        raise ApiProblem(422, str(e), code=e.code) from None
    location = url_for("api.deposit_show", deposit_id=deposit.id)
    return jsonify(_deposit_full(user, deposit)), 201, {"Location": location}


@bp.get("/deposits/<deposit_id>")
@requires(ApiScope.READ)
def deposit_show(deposit_id: str) -> Response:
    """One deposit: metadata, files and, for the sending side, the receipts."""
    user = the_user()
    return jsonify(_deposit_full(user, _deposit_or_404(user, deposit_id)))


@bp.post("/deposits/<deposit_id>/files")
@requires(ApiScope.DEPOSIT)
def file_upload(deposit_id: str) -> tuple[Response, int, dict[str, str]]:
    """Add one file to a draft: the raw request body, encrypted as it streams in.

    The file name comes in the `X-Filename` header (percent-encoded UTF-8), not in the URL:
    names of fiches often carry a person's name, and URLs end up in proxy logs.
    """
    user = the_user()
    deposit = _deposit_or_404(user, deposit_id)
    svc = services()
    name = unquote(request.headers.get("X-Filename", ""))[:1000]
    if not name.strip():
        raise _invalid([{"parameter": "X-Filename", "detail": "Nom de fichier manquant."}])
    limit = svc.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiProblem(413, "Fichier trop volumineux.", code=deposits.FileTooLarge.code)
    chunks = iter(functools.partial(request.stream.read, UPLOAD_CHUNK), b"")
    try:
        record = deposits.add_file(
            db.session, svc.store, user, deposit, name, chunks,
            size_limit=limit, ctx=audit_context(), antivirus=Antivirus.of(svc),
            declared_size=request.content_length,
        )  # fmt: skip
    except deposits.FileTooLarge as e:
        raise ApiProblem(413, str(e), code=e.code) from None
    except deposits.DepositError as e:
        raise ApiProblem(422, str(e), code=e.code) from None
    except storage.StorageUnavailable as e:
        if is_database_unavailable(e):
            raise  # the keyring's database, not the store: answered 503 by the app
        raise ApiProblem(
            503,
            "Le stockage est momentanément indisponible : réessayez plus tard.",
            code="storage_unavailable",
        ) from None
    location = url_for("api.file_content", deposit_id=deposit_id, file_id=record.id)
    body = {
        "id": record.id,
        "name": record.filename,
        "content_type": record.content_type,
        "size": record.size,
        "sha256": record.sha256,
        "created_at": _at(record.created_at),
        "destroyed": False,
        "content_url": location,
    }
    return jsonify(body), 201, {"Location": location}


@bp.post("/deposits/<deposit_id>/publish")
@requires(ApiScope.DEPOSIT)
def deposit_publish(deposit_id: str) -> Response:
    """Send the draft: it becomes visible to its recipients, who are notified by e-mail."""
    user = the_user()
    deposit = _deposit_or_404(user, deposit_id)
    ctx = audit_context()
    try:
        notifications.publish_and_notify(db.session, services(), user, deposit, ctx)
    except deposits.DepositError as e:
        raise ApiProblem(422, str(e), code=e.code) from None
    return jsonify(_deposit_full(user, deposit))


@bp.get("/deposits/<deposit_id>/files/<file_id>/content")
@requires(ApiScope.READ)
def file_content(deposit_id: str, file_id: str) -> Response:
    """The decrypted file, through the same signed link as the web (checks, counter, receipt)."""
    user = the_user()
    deposit = _deposit_or_404(user, deposit_id)
    file = next((f for f in deposit.files if f.id == file_id), None)
    if file is None:
        raise ApiProblem(404, "Ce fichier n'existe pas ou vous n'y avez pas accès.")
    svc, ctx = services(), audit_context()
    try:
        link = downloads.issue_link(db.session, svc.settings.secret_key, user, deposit, file, ctx)
        download = downloads.redeem_link(
            db.session, svc, user, link, ctx, reuse_buffers=server_sends_buffers()
        )
    except deposits.LinkRefused as e:
        raise ApiProblem(410, str(e), code=e.code) from None
    except deposits.FileCorrupted as e:
        raise ApiProblem(502, str(e), code=e.code) from None
    return streamed(download)


@bp.post("/deposits/<deposit_id>/withdraw")
@requires(ApiScope.DEPOSIT)
def deposit_withdraw(deposit_id: str) -> Response:
    """Withdraw the deposit before its expiry: its content is destroyed at once."""
    user = the_user()
    deposit = _deposit_or_404(user, deposit_id)
    try:
        # A store that cannot remove the content now is not an error: the deposit is destroyed
        # (keys shredded) and its answer says `content_removal_pending`.
        deposits.withdraw(db.session, services().store, user, deposit, audit_context())
    except deposits.DepositError as e:
        raise ApiProblem(422, str(e), code=e.code) from None
    db.session.expire_all()  # the destruction was written by bulk UPDATEs
    return jsonify(_deposit_full(user, deposit))


# --- the contract ----------------------------------------------------------------------------


@bp.get("/openapi.json")
@requires(None)
def openapi() -> Response:
    """This API described in OpenAPI 3.1 (kept true by a test)."""
    svc = services()
    return jsonify(openapi_document(svc.settings.base_url, svc.catalogue))


# The flows' endpoints live in their own module, on this blueprint.
from portal.api import fiches as _fiches  # noqa: E402,F401 - registers its routes, after the blueprint
from portal.api import flows as _flows  # noqa: E402,F401 - registers its routes, after the blueprint
