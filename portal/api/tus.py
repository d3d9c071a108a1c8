"""tus 1.0.0 resumable uploads on the API (core, creation, termination, expiration).

    OPTIONS /api/v1/uploads                     what the server supports (and the piece rules)
    POST    /api/v1/deposits/<id>/uploads       creation: Upload-Length, Upload-Metadata filename
    HEAD    /api/v1/uploads/<upload>            Upload-Offset, Upload-Length, Upload-Expires
    PATCH   /api/v1/uploads/<upload>            one piece at Upload-Offset
    DELETE  /api/v1/uploads/<upload>            termination

Every request is a bearer-token request like the rest of the API (scope `deposit`), and every
one passes the isolation check of the upload's deposit: an unknown upload and another's look
the same (404). Off unless `RESUMABLE_UPLOADS` is set. Piece rules (docs/storage.md): every
PATCH but the last carries a multiple of `Filr-Chunk-Granularity` bytes, at least
`Filr-Min-Chunk-Size`, at most `Filr-Max-Chunk-Size`; a PATCH is stored whole or not at all.
"""

from __future__ import annotations

from email.utils import format_datetime

from flask import request, url_for

import storage
from portal.api.models import ApiScope
from portal.api.problems import ApiProblem
from portal.api.views import _deposit_or_404, bp, requires
from portal.container import services
from portal.db import db
from portal.deposits import resumable
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.models import DepositFile, ResumableUpload
from portal.web import audit_context, the_user

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
NO_UPLOAD = "Cet envoi n'existe pas ou vous n'y avez pas accès."


def limits() -> resumable.Limits:
    """The piece rules of this deployment."""
    svc = services()
    return resumable.limits_of(svc.store, svc.settings)


def _tus_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **(extra or {})}


def _enabled() -> None:
    if not services().settings.resumable_uploads:
        raise ApiProblem(404, NO_UPLOAD)


def _checked_version() -> None:
    _enabled()
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise ApiProblem(
            412,
            f"Version du protocole tus non prise en charge : {TUS_VERSION} attendue.",
            code="tus_version",
            headers={"Tus-Version": TUS_VERSION, "Tus-Resumable": TUS_VERSION},
        )


def _number(name: str) -> int:
    value = request.headers.get(name, "")
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ApiProblem(
            400, f"En-tête {name} manquant ou invalide.", code="invalid",
            headers=_tus_headers(),
        )  # fmt: skip
    return int(value)


def _filename(metadata: str) -> str:
    name = resumable.filename_from_metadata(metadata)
    if name is None:
        raise ApiProblem(
            400, "Nom de fichier manquant (Upload-Metadata filename).", code="invalid",
            headers=_tus_headers(),
        )  # fmt: skip
    return name


def _upload_or_404(upload_id: str) -> ResumableUpload:
    upload = resumable.find_upload(db.session, the_user(), upload_id, audit_context())
    if upload is None:
        raise ApiProblem(404, NO_UPLOAD, headers=_tus_headers())
    return upload


def _state_headers(upload: ResumableUpload) -> dict[str, str]:
    return _tus_headers(
        {
            "Upload-Offset": str(upload.offset),
            "Upload-Length": str(upload.length),
            "Upload-Expires": format_datetime(upload.expires_at, usegmt=True),
        }
    )


def _refused(e: deposits.DepositError) -> ApiProblem:
    status = 413 if isinstance(e, deposits.FileTooLarge) else 422
    if isinstance(e, resumable.OffsetMismatch):
        status = 409
    elif isinstance(e, resumable.ChunkRefused):
        status = 400
    return ApiProblem(status, str(e), code=e.code, headers=_tus_headers())


def _unavailable() -> ApiProblem:
    return ApiProblem(
        503,
        "Le stockage est momentanément indisponible : réessayez plus tard.",
        code="storage_unavailable",
        headers=_tus_headers(),
    )


@bp.route("/uploads", methods=["OPTIONS"], provide_automatic_options=False)
@requires(None)
def tus_options() -> tuple[str, int, dict[str, str]]:
    """What the server supports: tus version, extensions, sizes, and the piece rules."""
    _enabled()
    rules = limits()
    return "", 204, {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(rules.max_size),
        "Filr-Chunk-Granularity": str(rules.granularity),
        "Filr-Min-Chunk-Size": str(rules.min_chunk),
        "Filr-Max-Chunk-Size": str(rules.max_chunk),
    }  # fmt: skip


@bp.post("/deposits/<deposit_id>/uploads")
@requires(ApiScope.DEPOSIT)
def tus_create(deposit_id: str) -> tuple[str, int, dict[str, str]]:
    """tus creation: start the upload of one file into a draft deposit."""
    _checked_version()
    user = the_user()
    deposit = _deposit_or_404(user, deposit_id)
    if "Upload-Defer-Length" in request.headers:
        raise ApiProblem(
            400, "La taille du fichier doit être annoncée.", code="invalid",
            headers=_tus_headers(),
        )  # fmt: skip
    length = _number("Upload-Length")
    name = _filename(request.headers.get("Upload-Metadata", ""))
    try:
        upload = resumable.begin(
            db.session, services().store, user, deposit, name, length, limits()
        )
    except deposits.DepositError as e:
        raise _refused(e) from None
    except storage.StorageUnavailable:
        raise _unavailable() from None
    headers = _state_headers(upload)
    headers["Location"] = url_for("api.tus_upload", upload_id=upload.id)
    return "", 201, headers


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
@requires(ApiScope.DEPOSIT)
def tus_upload(upload_id: str) -> tuple[str, int, dict[str, str]]:
    """tus core: where the upload stands (never cached)."""
    _checked_version()
    return "", 200, _state_headers(_upload_or_404(upload_id))


@bp.patch("/uploads/<upload_id>")
@requires(ApiScope.DEPOSIT)
def tus_patch(upload_id: str) -> tuple[str, int, dict[str, str]]:
    """tus core: one piece at Upload-Offset, stored whole (or not at all) before the answer."""
    _checked_version()
    upload = _upload_or_404(upload_id)
    if request.mimetype != "application/offset+octet-stream":
        raise ApiProblem(
            415, "Type de contenu attendu : application/offset+octet-stream.",
            code="invalid", headers=_tus_headers(),
        )  # fmt: skip
    offset = _number("Upload-Offset")
    rules = limits()
    size = request.content_length
    if size is None or size > rules.max_chunk:
        raise ApiProblem(
            413 if size else 411, "Taille du morceau absente ou trop grande.",
            code="chunk_size", headers=_tus_headers(),
        )  # fmt: skip
    data = request.stream.read(size)  # a cut connection raises ClientDisconnected (400)
    if len(data) != size:
        raise ApiProblem(400, "Morceau incomplet.", code="invalid", headers=_tus_headers())
    svc = services()
    try:
        result = resumable.append(
            db.session, svc.store, the_user(), upload, offset, data, rules,
            ctx=audit_context(), antivirus=Antivirus.of(svc),
        )  # fmt: skip
    except deposits.DepositError as e:
        raise _refused(e) from None
    except storage.StorageUnavailable:
        raise _unavailable() from None
    if isinstance(result, DepositFile):
        return (
            "",
            204,
            _tus_headers(
                {
                    "Upload-Offset": str(result.size),
                    "Filr-File-Id": result.id,
                    "Filr-File-Sha256": result.sha256,
                }
            ),
        )
    return "", 204, _state_headers(result)


@bp.delete("/uploads/<upload_id>")
@requires(ApiScope.DEPOSIT)
def tus_delete(upload_id: str) -> tuple[str, int, dict[str, str]]:
    """tus termination: drop an unfinished upload."""
    _checked_version()
    upload = _upload_or_404(upload_id)
    try:
        resumable.terminate(db.session, services().store, upload)
    except deposits.DepositError as e:
        raise _refused(e) from None
    return "", 204, _tus_headers()
