"""Resumable uploads from the deposit page (tus 1.0.0 core, creation, termination).

The web twin of `portal.api.tus`, for the page's tus-js-client (`static/upload.js`):

    POST   /depots/<id>/envois        creation: Upload-Length, Upload-Metadata filename
    HEAD   /depots/envois/<upload>    Upload-Offset, Upload-Length, Upload-Expires
    PATCH  /depots/envois/<upload>    one piece at Upload-Offset
    DELETE /depots/envois/<upload>    termination

Every request is a request of the logged-in session (the gate: log-in and MFA), and every
request but HEAD carries the session's CSRF token (`X-CSRFToken`, checked by CSRFProtect like
any POST of the portal). Every request passes THE isolation check of the upload's deposit
(`resumable.find_upload` → `services.find_deposit` → `spaces_of`), so an unknown upload and
another's look the same (404); the pieces are encrypted under the deposit's département key
by `resumable.append`, as on the API. Off unless `RESUMABLE_UPLOADS` is set. Errors are
`{"error": "<French message>"}`, as for the one-request upload of the same page.
"""

from __future__ import annotations

from email.utils import format_datetime

from flask import Response, abort, jsonify, request, url_for

import storage
from portal.container import services
from portal.db import db, is_database_unavailable
from portal.deposits import resumable
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.models import DepositFile, ResumableUpload
from portal.deposits.views import _deposit_or_404, bp
from portal.web import audit_context, the_user

TUS_VERSION = "1.0.0"
NO_UPLOAD = "Cet envoi n'existe pas ou vous n'y avez pas accès."
UNAVAILABLE = "Le stockage est momentanément indisponible : réessayez plus tard."


def _limits() -> resumable.Limits:
    svc = services()
    return resumable.limits_of(svc.store, svc.settings)


def _answer(
    status: int, headers: dict[str, str] | None = None, error: str | None = None
) -> Response:
    response = jsonify(error=error) if error is not None else Response(status=status)
    response.status_code = status
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _enabled() -> None:
    if not services().settings.resumable_uploads:
        abort(404)


def _checked_version() -> Response | None:
    _enabled()
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        return _answer(
            412, {"Tus-Version": TUS_VERSION},
            error=f"Version du protocole tus non prise en charge : {TUS_VERSION} attendue.",
        )  # fmt: skip
    return None


def _number(name: str) -> int | None:
    value = request.headers.get(name, "")
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _state_headers(upload: ResumableUpload) -> dict[str, str]:
    return {
        "Upload-Offset": str(upload.offset),
        "Upload-Length": str(upload.length),
        "Upload-Expires": format_datetime(upload.expires_at, usegmt=True),
    }


def _refused(e: deposits.DepositError) -> Response:
    status = 413 if isinstance(e, deposits.FileTooLarge) else 422
    if isinstance(e, resumable.OffsetMismatch):
        status = 409
    elif isinstance(e, resumable.ChunkRefused):
        status = 400
    return _answer(status, error=str(e))


def _upload_or_404(upload_id: str) -> ResumableUpload:
    upload = resumable.find_upload(db.session, the_user(), upload_id, audit_context())
    if upload is None:
        abort(404)
    return upload


def _unavailable(e: storage.StorageUnavailable) -> Response:
    if is_database_unavailable(e):
        raise e  # the keyring's database, not the store: answered 503 by the app
    return _answer(503, error=UNAVAILABLE)


@bp.post("/depots/<deposit_id>/envois")
def tus_create(deposit_id: str) -> Response:
    """tus creation: start the resumable upload of one file into the user's draft."""
    refused = _checked_version()
    if refused is not None:
        return refused
    user, deposit = _deposit_or_404(deposit_id)
    length = _number("Upload-Length")
    if length is None:
        return _answer(400, error="Taille du fichier manquante (Upload-Length).")
    name = resumable.filename_from_metadata(request.headers.get("Upload-Metadata", ""))
    if name is None:
        return _answer(400, error="Nom de fichier manquant.")
    try:
        upload = resumable.begin(
            db.session, services().store, user, deposit, name, length, _limits()
        )
    except deposits.DepositError as e:
        return _refused(e)
    except storage.StorageUnavailable as e:
        return _unavailable(e)
    headers = _state_headers(upload)
    headers["Location"] = url_for("deposits.tus_upload", upload_id=upload.id)
    return _answer(201, headers)


@bp.route("/depots/envois/<upload_id>", methods=["HEAD"])
def tus_upload(upload_id: str) -> Response:
    """tus core: where the upload stands."""
    refused = _checked_version()
    if refused is not None:
        return refused
    return _answer(200, _state_headers(_upload_or_404(upload_id)))


@bp.route("/depots/envois/<upload_id>", methods=["PATCH"])
def tus_patch(upload_id: str) -> Response:
    """tus core: one piece at Upload-Offset, stored whole (or not at all) before the answer."""
    refused = _checked_version()
    if refused is not None:
        return refused
    upload = _upload_or_404(upload_id)
    if request.mimetype != "application/offset+octet-stream":
        return _answer(415, error="Type de contenu attendu : application/offset+octet-stream.")
    offset = _number("Upload-Offset")
    if offset is None:
        return _answer(400, error="Position du morceau manquante (Upload-Offset).")
    rules = _limits()
    size = request.content_length
    if size is None or size > rules.max_chunk:
        return _answer(413 if size else 411, error="Taille du morceau absente ou trop grande.")
    data = request.stream.read(size)  # a cut connection raises ClientDisconnected (400)
    if len(data) != size:
        return _answer(400, error="Morceau incomplet.")
    svc = services()
    try:
        result = resumable.append(
            db.session, svc.store, the_user(), upload, offset, data, rules,
            ctx=audit_context(), antivirus=Antivirus.of(svc),
        )  # fmt: skip
    except deposits.DepositError as e:
        return _refused(e)
    except storage.StorageUnavailable as e:
        return _unavailable(e)
    if isinstance(result, DepositFile):
        return _answer(204, {
            "Upload-Offset": str(result.size),
            "Filr-File-Id": result.id,
            "Filr-File-Sha256": result.sha256,
        })  # fmt: skip
    return _answer(204, _state_headers(result))


@bp.route("/depots/envois/<upload_id>", methods=["DELETE"])
def tus_delete(upload_id: str) -> Response:
    """tus termination: the sender drops an unfinished upload."""
    refused = _checked_version()
    if refused is not None:
        return refused
    upload = _upload_or_404(upload_id)
    try:
        resumable.terminate(db.session, services().store, upload)
    except deposits.DepositError as e:
        return _refused(e)
    return _answer(204)
