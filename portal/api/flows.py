"""REST API of the XML flows: deposit (validated before delivery) and read a flow.

Registered on the API blueprint of `portal.api.views`: same bearer tokens, scopes, rate limit
and problem documents. A refused file answers 422 with every error of the report in `errors`.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import unquote

from flask import Response, jsonify, request, url_for

import storage
from portal.api.models import ApiScope
from portal.api.problems import ApiProblem
from portal.api.views import bp, requires
from portal.container import services
from portal.db import db, is_database_unavailable
from portal.deposits import services as deposits
from portal.deposits.views import UPLOAD_CHUNK
from portal.flows import services as flows
from portal.flows.core.types import FlowType
from portal.flows.models import FlowDeposit
from portal.flows.permissions import can_deposit_flow
from portal.web import audit_context, the_user

FLOW_NOT_FOUND = "Ce flux n'existe pas ou vous n'y avez pas accès."


def _at(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _issue(issue: dict[str, Any]) -> dict[str, Any]:
    return {"detail": issue["message"], **{k: v for k, v in issue.items() if k != "message"}}


def flow_json(flow: FlowDeposit) -> dict[str, Any]:
    """A flow as the API shows it: counts, period, outcome, and the report kept with it.

    The caller passed the isolation check; a refused flow is only ever seen by its sending side,
    a valid one's report holds warnings on the very file the receiving side downloads.
    """
    deposit = flow.deposit
    stored = flows.open_report(services().settings.secret_key, flow)
    report = [_issue(i) for i in stored.get("issues", [])] if stored else None
    return {
        "id": flow.id,
        "departement": flow.departement_code,
        "flow_type": flow.flow_type,
        "status": flow.status,
        "period_start": flow.period_start.isoformat(),
        "date_reference": _at(flow.date_reference),
        "version": flow.version,
        "record_count": flow.record_count,
        "nature_counts": flow.nature_counts,
        "error_count": flow.error_count,
        "warning_count": flow.warning_count,
        "sanity": flow.sanity,
        "unusable": (
            {"at": _at(flow.unusable_at), "reason": flow.unusable_reason}
            if flow.unusable_at
            else None
        ),
        "created_at": _at(flow.created_at),
        "expires_at": _at(deposit.expires_at) if flow.is_valid else None,
        "deposit_url": (
            url_for("api.deposit_show", deposit_id=deposit.id) if flow.is_valid else None
        ),
        "issues": report,
        "readings": stored.get("readings", {}) if stored else None,
        "url": url_for("api.flow_show", flow_id=flow.id),
    }


@bp.post("/flows")
@requires(ApiScope.DEPOSIT)
def flow_deposit() -> tuple[Response, int, dict[str, str]]:
    """Deposit a flow: the raw body is stored encrypted, validated, then delivered or refused.

    `departement` (the space) and optional `type` come as query parameters, the file name in
    the `X-Filename` header.
    """
    user = the_user()
    departement = request.args.get("departement", "")
    if not can_deposit_flow(user, departement):
        raise ApiProblem(404, "Cet espace départemental n'existe pas ou vous n'y avez pas accès.")
    raw_type = request.args.get("type") or None
    errors: list[dict[str, str]] = []
    expected = None
    if raw_type is not None:
        try:
            expected = FlowType(raw_type)
        except ValueError:
            errors.append({"parameter": "type", "detail": "« type » : CGPEM, PECGM ou PECDH."})
    name = unquote(request.headers.get("X-Filename", ""))[:1000]
    if not name.strip():
        errors.append({"parameter": "X-Filename", "detail": "Nom de fichier manquant."})
    if errors:
        raise ApiProblem(422, errors[0]["detail"], code="invalid", extra={"errors": errors})
    svc = services()
    limit = svc.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiProblem(413, "Fichier trop volumineux.", code=deposits.FileTooLarge.code)
    chunks = iter(functools.partial(request.stream.read, UPLOAD_CHUNK), b"")
    try:
        outcome = flows.deposit_flow(
            db.session, svc, user, departement, expected, name, chunks, audit_context(),
            declared_size=request.content_length,
        )  # fmt: skip
    except deposits.FileTooLarge as e:
        raise ApiProblem(413, str(e), code=e.code) from None
    except deposits.FileCorrupted as e:
        raise ApiProblem(502, str(e), code=e.code) from None
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
    body = flow_json(outcome.flow)
    if not outcome.flow.is_valid:
        report = outcome.report.to_dict()
        raise ApiProblem(
            422,
            f"Fichier refusé : {outcome.report.error_count} erreur(s). Rien n'a été transmis.",
            code="flow_invalid",
            extra={
                "errors": [_issue(i) for i in report["issues"]],
                "omitted_issue_count": report["omitted_issue_count"],
                "flow": body,
            },
        )
    return jsonify(body), 201, {"Location": body["url"]}


@bp.get("/flows/<flow_id>")
@requires(ApiScope.READ)
def flow_show(flow_id: str) -> Response:
    """One flow: outcome, period, counts, sanity findings and its validation report."""
    user = the_user()
    flow = flows.find_flow(db.session, user, flow_id, audit_context())
    if flow is None:
        raise ApiProblem(404, FLOW_NOT_FOUND)
    return jsonify(flow_json(flow))
