"""The verbs of fiches: save a draft, send, open, decide, forward, correct, remind, destroy.

No request and no flash here: callers pass the session, the services and the audit context.
A fiche's values are an encrypted object of the store (the département's key, the same
envelope as a deposited file); nothing of them reaches the database in clear, nor a log, an
e-mail or an audit row. The inbox's name and birth date are sealed (`PersonSeal`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, Role, User
from portal.container import Services
from portal.db import is_well_formed_id, new_id, utcnow
from portal.deposits.listing import decode_cursor
from portal.deposits.services import refuse_unseen
from portal.fiches.catalogue import Form
from portal.fiches.display import RenderedBlock, render
from portal.fiches.models import (
    DECISION_DELAY,
    MAX_LIFETIME,
    WAITING,
    Fiche,
    FicheAttachment,
    FicheState,
)
from portal.fiches.permissions import (
    can_correct,
    can_decide,
    can_forward_to,
    can_see_fiche,
    handles_fiches,
    is_recipient_side,
    visible_fiches,
)
from portal.fiches.validator import REQUIRED, clean, validate
from portal.filecheck.clamd import ClamdUnavailable
from portal.filecheck.pdf_content import check_pdf
from portal.formats import PARIS, date_fr, size_fr
from portal.mail import deliver
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import may_exchange, spaces_of, spaces_of_organisation
from portal.text import fold

NOT_FOUND = "Cette fiche n'existe pas ou vous n'y avez pas accès."
DECISION_LABELS = {"oui": "OUI", "non": "NON"}


class FicheError(ValueError):
    """A request on a fiche cannot be carried out; *errors* per field id (French); *code*: the
    API's stable key when it is not `invalid` (`file_refused`, `file_infected`,
    `file_too_large`, `antivirus_unavailable`)."""

    def __init__(
        self, message: str, errors: Mapping[str, str] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})
        self.code = code


# --- the inbox's sealed columns ------------------------------------------------------------


class PersonSeal:
    """Seals the person's name and birth date (bound to the fiche's id) for the inbox, and
    digests the folded surname for the search, with keys derived from the application secret."""

    def __init__(self, secret_key: str) -> None:
        def derive(info: bytes) -> bytes:
            return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(
                secret_key.encode()
            )

        self._aead = AESGCM(derive(b"filr fiche inbox v1"))
        self._index_key = derive(b"filr fiche search v1")

    def seal(self, fiche_id: str, name: str, birth_date: str | None) -> str:
        nonce = os.urandom(12)
        payload = json.dumps([name, birth_date], ensure_ascii=False).encode()
        sealed = self._aead.encrypt(nonce, payload, fiche_id.encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, fiche_id: str, sealed: str) -> tuple[str, str | None]:
        raw = base64.urlsafe_b64decode(sealed.removeprefix("v1:"))
        name, birth = json.loads(self._aead.decrypt(raw[:12], raw[12:], fiche_id.encode()))
        return str(name), birth

    def index(self, surname: str) -> str:
        folded = " ".join(fold(surname).split())
        return hmac.new(self._index_key, folded.encode(), hashlib.sha256).hexdigest()


@cache
def _seal_for(secret_key: str) -> PersonSeal:
    return PersonSeal(secret_key)


def person_seal(svc: Services) -> PersonSeal:
    return _seal_for(svc.settings.secret_key)


def _target(fiche: Fiche) -> audit.Target:
    return audit.Target("fiche", fiche.id, fiche.departement_code)


# --- the encrypted values --------------------------------------------------------------------


def _write_values(store: storage.EncryptedStore, fiche: Fiche, values: Mapping[str, Any]) -> str:
    """Store *values* encrypted under the département's key; returns the object key."""
    object_key = f"fiches/{fiche.id}/{new_id()}"
    store.keyring.ensure(fiche.departement_code)
    payload = json.dumps(values, ensure_ascii=False, sort_keys=True).encode()
    store.put(object_key, [payload], departement=fiche.departement_code)
    return object_key


def read_values(session: Session, store: storage.EncryptedStore, fiche: Fiche) -> dict[str, Any]:
    """The decrypted values of *fiche* (empty once destroyed).

    The session's transaction ends first: the key store has its own connection, which must not
    wait for this one's lock (SQLite takes it at BEGIN)."""
    session.commit()
    if fiche.values_key is None:
        return {}
    data = json.loads(b"".join(store.open(fiche.values_key)))
    return data if isinstance(data, dict) else {}


def _drop_values(store: storage.EncryptedStore, object_key: str | None) -> None:
    if object_key is None:
        return
    try:
        store.delete(object_key)
    except storage.StorageError:
        store.shred(object_key)  # the ciphertext stays, unreadable, for the orphans job


# --- what a form may refer to ------------------------------------------------------------


@dataclass
class References:
    """The organisations and people a form's fields may name, in one space."""

    choices: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    allowed: dict[str, set[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def person_label(user: User) -> str:
    function = user.habilitation.function_label if user.habilitation else None
    parts = [user.full_name, function, user.email, user.organisation.name]
    return " — ".join(p for p in parts if p)


def references(
    session: Session,
    sender: User,
    form: Form,
    departement: str,
    values: Mapping[str, Any],
    fiche_id: str | None = None,
) -> References:
    """Choices of the form's organisation and person fields for *sender* in *departement*,
    and the attachments already stored for *fiche_id*'s attachment fields."""
    refs = References()
    fields = list(form.fields(None))
    if any(f.type == "attachment" for f in fields):
        attachments = attachments_of(session, fiche_id) if fiche_id else []
        for f in fields:
            if f.type == "attachment":
                mine = [a for a in attachments if a.field_id == f.id and a.object_key]
                refs.allowed[f.id] = {a.id for a in mine}
                refs.labels.update((a.id, attachment_label(a)) for a in mine)
    # Only the organisations of the kinds the form names, and only the agents of the
    # organisations a person field may name: one query each, whatever the portal's size.
    kinds = sorted({k for f in fields if f.type == "organisation" for k in f.org_kinds})
    orgs = (
        list(
            session.execute(
                sa.select(Organisation)
                .where(Organisation.kind.in_(kinds))
                .order_by(Organisation.name)
            ).scalars()
        )
        if kinds
        else []
    )
    by_id = {o.id: o for o in orgs}
    for f in fields:
        if f.type == "organisation":
            fitting = [
                o
                for o in orgs
                if o.kind in f.org_kinds and departement in spaces_of_organisation(o)
            ]
            refs.choices[f.id] = [(o.id, o.name) for o in fitting]
            refs.allowed[f.id] = {o.id for o in fitting}
            refs.labels.update((o.id, o.name) for o in fitting)
    person_fields = [f for f in fields if f.type == "person"]
    wanted: set[str] = set()
    for f in person_fields:
        if f.organisation_field is None:
            wanted.add(sender.organisation_id)
        else:
            wanted |= refs.allowed.get(f.organisation_field, set())
    members: dict[str, list[User]] = {}
    if wanted:
        for user in session.execute(
            sa.select(User)
            .where(User.status == AccountStatus.ACTIVE, User.organisation_id.in_(sorted(wanted)))
            .order_by(User.full_name)
        ).scalars():
            members.setdefault(user.organisation_id, []).append(user)
    for f in person_fields:
        if f.organisation_field is None:
            org_ids = [sender.organisation_id]
            chosen: Any = sender.organisation_id
        else:
            org_ids = sorted(
                refs.allowed.get(f.organisation_field, ()), key=lambda i: by_id[i].name
            )
            chosen = values.get(f.organisation_field)
        people = [u for org_id in org_ids for u in members.get(org_id, ())]
        refs.choices[f.id] = [(u.id, person_label(u)) for u in people]
        refs.allowed[f.id] = {u.id for u in people if u.organisation_id == chosen}
        refs.labels.update((u.id, person_label(u)) for u in people)
    return refs


def stored_labels(session: Session, values: Mapping[str, Any]) -> dict[str, str]:
    """Names for the organisation and person ids a stored fiche holds."""
    ids = [v for v in values.values() if isinstance(v, str) and is_well_formed_id(v)]
    if not ids:
        return {}
    labels = {
        o.id: o.name
        for o in session.execute(sa.select(Organisation).where(Organisation.id.in_(ids))).scalars()
    }
    for user in session.execute(sa.select(User).where(User.id.in_(ids))).scalars():
        labels[user.id] = person_label(user)
    return labels


# --- choosing a form and a recipient ------------------------------------------------------


def offered_forms(svc: Services, user: User, departement: str) -> list[Form]:
    if not handles_fiches(user) or departement not in spaces_of(user):
        return []
    return svc.catalogue.offered(departement, user.organisation.kind)


def recipient_choices(
    session: Session, user: User, form: Form, departement: str
) -> list[Organisation]:
    """Organisations of *form*'s recipient kinds that *user* may address in *departement*."""
    if departement not in spaces_of(user):
        return []
    if not form.recipients:
        return []
    orgs = session.execute(
        sa.select(Organisation)
        .where(Organisation.kind.in_(sorted(form.recipients)))
        .order_by(Organisation.name)
    ).scalars()
    return [
        o
        for o in orgs
        if o.kind in form.recipients
        and o.id != user.organisation_id
        and may_exchange(user.organisation, o, departement)
    ]


def _checked_form(svc: Services, user: User, form_key: str, departement: str) -> Form:
    form = svc.catalogue.get(form_key)
    if form is None or form not in offered_forms(svc, user, departement):
        raise FicheError(
            "Ce formulaire n'est pas proposé à votre organisation dans cet espace.",
            {"form": "Choisissez un des formulaires proposés."},
        )
    return form


def _checked_recipient(
    session: Session, user: User, form: Form, departement: str, recipient_org_id: str
) -> Organisation:
    for org in recipient_choices(session, user, form, departement):
        if org.id == recipient_org_id:
            return org
    raise FicheError(
        "Destinataire non autorisé pour cet espace.",
        {"recipient": "Choisissez un des destinataires proposés."},
    )


def _sealed_person(
    svc: Services, fiche_id: str, form: Form, values: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """The inbox's sealed name and birth date, and the surname's search digest."""
    identity = values.get(form.person_identity or "")
    birth = values.get(form.person_birth_date or "")
    if isinstance(identity, dict) and identity.get("nom"):
        name = f"{str(identity.get('nom', '')).upper()} {identity.get('prenom', '')}".strip()
        seal = person_seal(svc)
        return (
            seal.seal(fiche_id, name, birth if isinstance(birth, str) else None),
            seal.index(str(identity["nom"])),
        )
    return None, None


# --- drafts and sending --------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """What a sender fills: the form, the space, the recipient and the values."""

    form_key: str
    departement: str
    recipient_org_id: str
    values: Mapping[str, Any]


def _new_fiche(user: User, form: Form, draft: Draft, state: str, now: datetime) -> Fiche:
    """A new row for *draft*, filled by *user* (a draft, or sent at once by `submit`)."""
    return Fiche(
        id=new_id(),
        form_id=form.id,
        form_version=form.version,
        departement_code=draft.departement,
        sender_id=user.id,
        sender_org_id=user.organisation_id,
        recipient_org_id=draft.recipient_org_id,
        state=state,
        created_at=now,
        updated_at=now,
        expires_at=now + MAX_LIFETIME,
    )


def save_draft(
    session: Session,
    svc: Services,
    user: User,
    draft: Draft,
    ctx: audit.Context,
    *,
    fiche: Fiche | None = None,
) -> tuple[Fiche, dict[str, str]]:
    """Create or update a draft: the values without a type error are kept (encrypted), the
    others are returned as errors; nothing is required yet. Commits."""
    if draft.departement not in spaces_of(user) or not handles_fiches(user):
        raise FicheError("Vous n'avez pas accès à cet espace départemental.")
    form = _checked_form(svc, user, draft.form_key, draft.departement)
    _checked_recipient(session, user, form, draft.departement, draft.recipient_org_id)
    if fiche is not None and (fiche.state != FicheState.DRAFT or fiche.sender_id != user.id):
        raise FicheError("Une fiche envoyée ne peut plus être modifiée : corrigez-la.")
    refs = references(
        session, user, form, draft.departement, draft.values, fiche.id if fiche else None
    )
    errors = validate(form, draft.values, allowed=refs.allowed)
    kept = {k: v for k, v in draft.values.items() if k not in errors}
    errors = {k: m for k, m in errors.items() if m != REQUIRED and k in draft.values}
    now = utcnow()
    created = fiche is None
    if fiche is None:
        fiche = _new_fiche(user, form, draft, FicheState.DRAFT, now)
        session.add(fiche)
        session.flush()
    else:
        # Conditional: the draft may have been sent (or destroyed) since it was read.
        moved = session.execute(
            sa.update(Fiche)
            .where(
                Fiche.id == fiche.id,
                Fiche.state == FicheState.DRAFT,
                Fiche.sender_id == user.id,
            )
            .values(
                form_id=form.id,
                form_version=form.version,
                departement_code=draft.departement,
                recipient_org_id=draft.recipient_org_id,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
            session.rollback()
            raise FicheError("Une fiche envoyée ne peut plus être modifiée : corrigez-la.")
        session.refresh(fiche)  # the space just written: the values go under its key
    fiche_id = fiche.id
    previous_key = fiche.values_key
    session.commit()  # no lock held while the store writes
    new_key = _write_values(svc.store, fiche, clean(form, kept))
    sealed, index = _sealed_person(svc, fiche_id, form, kept)
    # Only over the values this save started from, and only while still a draft: a send or
    # another save in between wins, and this one's object is destroyed (no orphan).
    won = session.execute(
        sa.update(Fiche)
        .where(
            Fiche.id == fiche_id,
            Fiche.state == FicheState.DRAFT,
            Fiche.values_key.is_(None)
            if previous_key is None
            else Fiche.values_key == previous_key,
        )
        .values(values_key=new_key, person_sealed=sealed, person_index=index)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
        session.rollback()
        _drop_values(svc.store, new_key)
        raise FicheError("Ce brouillon vient de changer ou a été envoyé : rechargez la page.")
    fiche = session.get(Fiche, fiche_id)
    assert fiche is not None  # noqa: S101 - updated above
    audit.record(
        session,
        AuditAction.FICHE_DRAFT_SAVED,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"form": form.key, "created": created},
    )
    session.commit()
    # Before reading the row again: on SQLite a transaction holds the write lock from its BEGIN,
    # and the key store (its own connection) must write to shred the old values' key.
    if previous_key is not None:
        _drop_values(svc.store, previous_key)
    session.refresh(fiche)
    return fiche, errors


def send(session: Session, svc: Services, user: User, fiche: Fiche, ctx: audit.Context) -> Fiche:
    """Send a complete draft: validated, immutable from now on, the recipients told. Commits.

    Raises FicheError (with the errors per field) when the values do not fill the form.
    """
    form = svc.catalogue.get(fiche.form_key)
    if form is None or fiche.sender_id != user.id or fiche.state != FicheState.DRAFT:
        raise FicheError("Cette fiche ne peut pas être envoyée.")
    _checked_recipient(session, user, form, fiche.departement_code, fiche.recipient_org_id)
    values = read_values(session, svc.store, fiche)
    checked_key = fiche.values_key  # the values just read and checked below
    refs = references(session, user, form, fiche.departement_code, values, fiche.id)
    errors = validate(form, values, allowed=refs.allowed)
    if errors:
        raise FicheError("La fiche est incomplète ou contient des erreurs.", errors)
    now = utcnow()
    # Only the values checked above go out: a save in between (another tab, the API) changed
    # the draft's values_key, and this send loses rather than deliver unchecked values.
    updated = session.execute(
        sa.update(Fiche)
        .where(
            Fiche.id == fiche.id,
            Fiche.state == FicheState.DRAFT,
            Fiche.values_key.is_(None) if checked_key is None else Fiche.values_key == checked_key,
        )
        .values(
            state=FicheState.SENT,
            sent_at=now,
            updated_at=now,
            due_at=now + DECISION_DELAY if form.has_decision else None,
            expires_at=now + MAX_LIFETIME,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
        session.rollback()
        raise FicheError(
            "Cette fiche a déjà été envoyée, ou son brouillon vient de changer : rechargez la page."
        )
    # A PDF the sender removed from the draft (or replaced) never reaches the recipient: its
    # key is shredded with the sending, and every read path shows only attachments with a key.
    kept = {
        str(values[f.id]) for f in form.fields(None) if f.type == "attachment" and values.get(f.id)
    }
    dropped: list[str] = []
    for attachment in attachments_of(session, fiche.id):
        if attachment.object_key is not None and attachment.id not in kept:
            dropped.append(attachment.object_key)
            attachment.object_key = None
    if fiche.replaces_id is not None:
        withdrawn = session.execute(
            sa.update(Fiche)
            .where(
                Fiche.id == fiche.replaces_id,
                Fiche.state.in_(WAITING),
                Fiche.replaced_by_id.is_(None),
            )
            .values(state=FicheState.WITHDRAWN, withdrawn_at=now, replaced_by_id=fiche.id)
            .execution_options(synchronize_session=False)
        )
        if withdrawn.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
            # Decided, replaced or destroyed meanwhile: this correction has nothing to replace.
            session.rollback()
            raise FicheError(
                "La fiche que celle-ci corrige a reçu une décision ou a déjà été remplacée : "
                "cette correction ne peut pas être envoyée."
            )
        audit.record(
            session,
            AuditAction.FICHE_WITHDRAWN,
            actor=user.audit_actor,
            context=ctx,
            target=audit.Target("fiche", fiche.replaces_id, fiche.departement_code),
            details={"replaced_by": fiche.id},
        )
    audit.record(
        session,
        AuditAction.FICHE_SENT,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"form": form.key, "recipient_org_id": fiche.recipient_org_id},
    )
    session.commit()
    for object_key in dropped:  # after the commit: the key store writes on its own connection
        _drop_values(svc.store, object_key)
    session.refresh(fiche)
    _notify_sent(session, svc, fiche, form, ctx)
    return fiche


def _notify_sent(
    session: Session, svc: Services, fiche: Fiche, form: Form, ctx: audit.Context
) -> None:
    _notify(
        session,
        svc,
        fiche,
        org_id=fiche.recipient_org_id,
        subject=f"Fil'R : une fiche de liaison vous attend ({form.name})",
        intro="Une fiche de liaison vous a été adressée sur Fil'R.",
        ctx=ctx,
        action=AuditAction.FICHE_NOTIFICATION_SENT,
        actor=audit.Actor(fiche.sender_id, fiche.sender_org_id),
    )


def submit(session: Session, svc: Services, user: User, draft: Draft, ctx: audit.Context) -> Fiche:
    """Validate, store and send in one go (the API): nothing is kept when the values are
    refused (FicheError with the errors per field)."""
    if draft.departement not in spaces_of(user) or not handles_fiches(user):
        raise FicheError(
            "Vous n'avez pas accès à cet espace départemental.",
            {"departement": "Choisissez un de vos espaces."},
        )
    form = _checked_form(svc, user, draft.form_key, draft.departement)
    _checked_recipient(session, user, form, draft.departement, draft.recipient_org_id)
    refs = references(session, user, form, draft.departement, draft.values)
    errors = validate(form, draft.values, allowed=refs.allowed)
    if errors:
        raise FicheError("La fiche est incomplète ou contient des erreurs.", errors)
    # Checked once: the fiche is written as sent at once, never a draft (no second reading
    # of the values, no second look at the references, no conditional update to race).
    now = utcnow()
    actor = user.audit_actor
    fiche = _new_fiche(user, form, draft, FicheState.SENT, now)
    fiche.sent_at = now
    fiche.due_at = now + DECISION_DELAY if form.has_decision else None
    session.commit()  # no transaction held while the key store and the object store write
    fiche.values_key = _write_values(svc.store, fiche, clean(form, dict(draft.values)))
    fiche.person_sealed, fiche.person_index = _sealed_person(svc, fiche.id, form, draft.values)
    session.add(fiche)
    audit.record(
        session,
        AuditAction.FICHE_SENT,
        actor=actor,
        context=ctx,
        target=_target(fiche),
        details={"form": form.key, "recipient_org_id": fiche.recipient_org_id},
    )
    try:
        session.commit()
    except Exception:
        session.rollback()
        _drop_values(svc.store, fiche.values_key)
        raise
    _notify_sent(session, svc, fiche, form, ctx)
    return fiche


def create_draft(
    session: Session,
    svc: Services,
    user: User,
    draft: Draft,
    ctx: audit.Context,
    *,
    fiche: Fiche | None = None,
) -> Fiche:
    """A draft from the API, new or replacing *fiche*'s values: they are checked as when
    sending, except that missing ones are allowed (completed later); nothing is kept when one is
    refused. The attachments already joined to *fiche* stay unless *draft* names others."""
    if draft.departement not in spaces_of(user) or not handles_fiches(user):
        raise FicheError(
            "Vous n'avez pas accès à cet espace départemental.",
            {"departement": "Choisissez un de vos espaces."},
        )
    form = _checked_form(svc, user, draft.form_key, draft.departement)
    _checked_recipient(session, user, form, draft.departement, draft.recipient_org_id)
    if fiche is not None:
        if fiche.state != FicheState.DRAFT or fiche.sender_id != user.id:
            raise FicheError("Une fiche envoyée ne peut plus être modifiée : corrigez-la.")
        current = read_values(session, svc.store, fiche)
        joined = {
            f.id: current[f.id]
            for f in form.fields(None)
            if f.type == "attachment" and f.id in current and f.id not in draft.values
        }
        draft = Draft(
            draft.form_key, draft.departement, draft.recipient_org_id, {**draft.values, **joined}
        )
    refs = references(
        session, user, form, draft.departement, draft.values, fiche.id if fiche else None
    )
    errors = {  # what is missing is not an error yet: `send` requires it
        k: m
        for k, m in validate(form, draft.values, allowed=refs.allowed).items()
        if k in draft.values and m != REQUIRED and draft.values[k] not in (None, "", [], False)
    }
    if errors:
        raise FicheError("La fiche contient des erreurs.", errors)
    saved, _ = save_draft(session, svc, user, draft, ctx, fiche=fiche)
    return saved


# --- reading -------------------------------------------------------------------------------


def find_fiche(session: Session, user: User, fiche_id: str, ctx: audit.Context) -> Fiche | None:
    """The fiche if *user* may see it; None (the caller answers 404) otherwise, audited."""
    if not is_well_formed_id(fiche_id):
        refuse_unseen(session, user, ctx, audit.Target("fiche"))
        return None
    fiche = session.execute(
        sa.select(Fiche).where(Fiche.id == fiche_id, visible_fiches(user))
    ).scalar_one_or_none()
    if fiche is not None and can_see_fiche(user, fiche):
        return fiche
    departement = session.execute(
        sa.select(Fiche.departement_code).where(Fiche.id == fiche_id)
    ).scalar_one_or_none()
    refuse_unseen(session, user, ctx, audit.Target("fiche", fiche_id, departement))
    return None


@dataclass(frozen=True)
class OpenedFiche:
    """A fiche as its page or its PDF shows it."""

    fiche: Fiche
    form: Form
    values: dict[str, Any]
    blocks: list[RenderedBlock]
    labels: dict[str, str]


def decision_values(fiche: Fiche) -> dict[str, Any]:
    if fiche.decision is None:
        return {}
    return {
        "entree_accompagnement": fiche.decision,
        "date_decision": fiche.decided_on.isoformat() if fiche.decided_on else None,
    }


def open_fiche(
    session: Session,
    svc: Services,
    user: User,
    fiche: Fiche,
    ctx: audit.Context,
    *,
    action: AuditAction = AuditAction.FICHE_VIEWED,
) -> OpenedFiche:
    """Decrypt *fiche* for *user* (who may see it), audited; its recipient's first look
    marks it "reçue". *action*: FICHE_VIEWED (the page) or FICHE_PDF_DOWNLOADED. Commits."""
    form = svc.catalogue.get(fiche.form_key)
    if form is None:
        raise FicheError("Le formulaire de cette fiche n'est plus au catalogue.")
    values = read_values(session, svc.store, fiche)
    first = False
    if is_recipient_side(user, fiche) and fiche.state == FicheState.SENT:
        now = utcnow()
        first = (
            session.execute(
                sa.update(Fiche)
                .where(Fiche.id == fiche.id, Fiche.state == FicheState.SENT)
                .values(state=FicheState.RECEIVED, received_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined] # DML: a CursorResult
            == 1
        )
    audit.record(
        session,
        action,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"form": form.key, "first_by_recipient": first},
    )
    session.commit()
    session.refresh(fiche)
    shown = {**values, **decision_values(fiche)}
    labels = stored_labels(session, values)
    labels.update((a.id, attachment_label(a)) for a in attachments_of(session, fiche.id))
    return OpenedFiche(fiche, form, values, render(form, shown, labels), labels)


def inbox_person(svc: Services, fiche: Fiche) -> tuple[str, str]:
    """The person's name and birth date (`JJ/MM/AAAA`) for the inbox, `—` when unknown."""
    if fiche.person_sealed is None:
        return "—", "—"
    name, birth = person_seal(svc).open(fiche.id, fiche.person_sealed)
    try:
        born = date_fr(date.fromisoformat(birth)) if birth else "—"
    except ValueError:
        born = "—"
    return name, born


@dataclass(frozen=True)
class Row:
    fiche: Fiche
    form_name: str
    person: str
    birth_date: str
    sender: str
    recipient: str
    forwarded_to: str | None


BOXES = ("recues", "envoyees", "brouillons", "en-retard")


PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    """One page of a box and the keyset cursor of the next one (None on the last)."""

    rows: list[Row]
    next_cursor: str | None


def _encode_cursor(at: datetime, fiche_id: str) -> str:
    raw = json.dumps([at.isoformat(), fiche_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_cursor(order: Any, cursor: str | None) -> list[sa.ColumnElement[bool]]:
    """Rows after *cursor* in (order, id) descending order; none for the first page or a
    cursor that does not decode (the first page is shown)."""
    values = decode_cursor(cursor) if cursor else None
    if not values:
        return []
    try:
        at = datetime.fromisoformat(values[0])
    except ValueError:
        return []
    if at.tzinfo is None:
        return []
    return [sa.or_(order < at, sa.and_(order == at, Fiche.id < values[1]))]


def list_fiches(
    session: Session,
    svc: Services,
    user: User,
    box: str,
    *,
    surname: str | None = None,
    limit: int = PAGE_SIZE,
    now: datetime | None = None,
) -> list[Row]:
    """The first page of *box* (see `fiches_page`)."""
    return fiches_page(session, svc, user, box, surname=surname, limit=limit, now=now).rows


def fiches_page(
    session: Session,
    svc: Services,
    user: User,
    box: str,
    *,
    surname: str | None = None,
    after: str | None = None,
    limit: int = PAGE_SIZE,
    now: datetime | None = None,
) -> Page:
    """A keyset page of *box*: received (or forwarded to the user's organisation), sent,
    drafts, or overdue (both sides), newest first; *surname* filters on the sealed index
    (exact); *after* is the cursor of the previous page's last row."""
    now = now or utcnow()
    query = sa.select(Fiche).where(visible_fiches(user))
    mine = user.organisation_id
    if box == "recues":
        query = query.where(
            sa.or_(Fiche.recipient_org_id == mine, Fiche.forwarded_org_id == mine),
            Fiche.state != FicheState.DRAFT,
        )
    elif box == "envoyees":
        query = query.where(Fiche.sender_org_id == mine, Fiche.state != FicheState.DRAFT)
    elif box == "brouillons":
        query = query.where(Fiche.sender_id == user.id, Fiche.state == FicheState.DRAFT)
    elif box == "en-retard":
        query = query.where(Fiche.state.in_(WAITING), Fiche.due_at <= now)
    else:
        return Page([], None)
    if surname:
        query = query.where(Fiche.person_index == person_seal(svc).index(surname))
    # The overdue box runs on its deadline (sent_at + 21 days): newest deadline first, read
    # down the (state, due_at) index one waiting state at a time, never sorting them all.
    order = {"brouillons": Fiche.created_at, "en-retard": Fiche.due_at}.get(box, Fiche.sent_at)
    query = query.where(order.is_not(None), *_after_cursor(order, after))
    ordering = (order.desc(), Fiche.id.desc())
    if box == "en-retard":
        firsts = [
            sa.select(
                query.where(Fiche.state == state)
                .with_only_columns(Fiche.id)
                .order_by(*ordering)
                .limit(limit + 1)
                .subquery()
            )
            for state in WAITING
        ]
        query = sa.select(Fiche).where(Fiche.id.in_(sa.union_all(*firsts)))
    fiches = list(session.execute(query.order_by(*ordering).limit(limit + 1)).scalars())
    next_cursor = None
    if len(fiches) > limit:
        fiches = fiches[:limit]
        last = fiches[-1]
        at = {"brouillons": last.created_at, "en-retard": last.due_at}.get(box, last.sent_at)
        if at is not None:
            next_cursor = _encode_cursor(at, last.id)
    org_ids = {f.sender_org_id for f in fiches} | {f.recipient_org_id for f in fiches}
    org_ids |= {f.forwarded_org_id for f in fiches if f.forwarded_org_id}
    names = (
        dict(
            session.execute(
                sa.select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))
            ).all()
        )
        if org_ids
        else {}
    )
    rows = []
    for fiche in fiches:
        form = svc.catalogue.get(fiche.form_key)
        person, born = inbox_person(svc, fiche)
        rows.append(
            Row(
                fiche,
                form.name if form else fiche.form_id,
                person,
                born,
                names.get(fiche.sender_org_id, "—"),
                names.get(fiche.recipient_org_id, "—"),
                names.get(fiche.forwarded_org_id) if fiche.forwarded_org_id else None,
            )
        )
    return Page(rows, next_cursor)


@dataclass(frozen=True)
class Step:
    when: datetime
    what: str


def history(session: Session, fiche: Fiche) -> list[Step]:
    """The fiche's life, from its columns: what every party to it may know."""
    names = dict(
        session.execute(
            sa.select(Organisation.id, Organisation.name).where(
                Organisation.id.in_(
                    [fiche.sender_org_id, fiche.recipient_org_id, fiche.forwarded_org_id or ""]
                )
            )
        ).all()
    )
    steps = [Step(fiche.created_at, "Fiche créée (brouillon)")]
    if fiche.sent_at:
        steps.append(Step(fiche.sent_at, f"Envoyée à {names.get(fiche.recipient_org_id, '—')}"))
    if fiche.received_at:
        steps.append(Step(fiche.received_at, "Reçue (ouverte par le destinataire)"))
    if fiche.forwarded_at and fiche.forwarded_org_id:
        steps.append(
            Step(fiche.forwarded_at, f"Transmise à {names.get(fiche.forwarded_org_id, '—')}")
        )
    if fiche.decided_at and fiche.decision:
        steps.append(
            Step(
                fiche.decided_at,
                "Décision enregistrée : entrée en accompagnement global "
                f"{DECISION_LABELS[fiche.decision]} (le {date_fr(fiche.decided_on)})",
            )
        )
    if fiche.withdrawn_at:
        steps.append(Step(fiche.withdrawn_at, "Retirée : remplacée par une fiche corrigée"))
    return sorted(steps, key=lambda s: s.when)


# --- decision, forwarding, correction --------------------------------------------------------


def record_decision(
    session: Session,
    svc: Services,
    user: User,
    fiche: Fiche,
    values: Mapping[str, Any],
    ctx: audit.Context,
) -> Fiche:
    """The receiving side's "Entrée en accompagnement global : OUI / NON" and its date;
    the prescriber is told (no personal data). Commits."""
    form = svc.catalogue.get(fiche.form_key)
    if form is None or not can_decide(user, fiche):
        raise FicheError("Vous ne pouvez pas enregistrer de décision sur cette fiche.")
    errors = validate(form, values, filled_by="recipient")
    if errors:
        raise FicheError("La décision est incomplète.", errors)
    decision = str(values["entree_accompagnement"])
    decided_on = date.fromisoformat(str(values["date_decision"]))
    now = utcnow()
    updated = session.execute(
        sa.update(Fiche)
        .where(Fiche.id == fiche.id, Fiche.state.in_(WAITING))
        .values(
            state=FicheState.ACCEPTED if decision == "oui" else FicheState.REFUSED,
            decision=decision,
            decided_on=decided_on,
            decided_at=now,
            decided_by_id=user.id,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
        session.rollback()
        raise FicheError("Une décision a déjà été enregistrée sur cette fiche.")
    audit.record(
        session,
        AuditAction.FICHE_DECIDED,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"decision": decision},
    )
    session.commit()
    session.refresh(fiche)
    _notify(
        session,
        svc,
        fiche,
        org_id=fiche.sender_org_id,
        subject=f"Fil'R : décision enregistrée sur une fiche de liaison ({form.name})",
        intro=(
            "Le destinataire d'une fiche de liaison que votre structure a envoyée a enregistré "
            "sa décision."
        ),
        ctx=ctx,
        action=AuditAction.FICHE_NOTIFICATION_SENT,
        actor=user.audit_actor,
    )
    return fiche


def forward_choices(session: Session, user: User, fiche: Fiche) -> list[Organisation]:
    """The providers *user*'s département mandates, to which it may forward *fiche*."""
    providers = session.execute(
        sa.select(Organisation)
        .where(
            Organisation.kind == OrgKind.PRESTATAIRE,
            Organisation.departement_code == fiche.departement_code,
        )
        .order_by(Organisation.name)
    ).scalars()
    return [p for p in providers if can_forward_to(user, fiche, p)]


def forward(
    session: Session,
    svc: Services,
    user: User,
    fiche: Fiche,
    provider_id: str,
    ctx: audit.Context,
) -> Fiche:
    """The SLAI forwards a received fiche to a provider its département mandates. Commits."""
    provider = next((p for p in forward_choices(session, user, fiche) if p.id == provider_id), None)
    if provider is None:
        raise FicheError(
            "Cette fiche ne peut être transmise qu'une fois, à un prestataire mandaté par le "
            "Département.",
            {"provider": "Choisissez un des prestataires proposés."},
        )
    now = utcnow()
    updated = session.execute(
        sa.update(Fiche)
        .where(
            Fiche.id == fiche.id,
            Fiche.forwarded_org_id.is_(None),
            # Withdrawn (a correction sent) or destroyed meanwhile: nothing to forward.
            Fiche.state.not_in((FicheState.DRAFT, FicheState.WITHDRAWN, FicheState.DESTROYED)),
        )
        .values(forwarded_org_id=provider.id, forwarded_at=now, forwarded_by_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
        session.rollback()
        raise FicheError("Cette fiche a déjà été transmise, retirée ou détruite.")
    audit.record(
        session,
        AuditAction.FICHE_FORWARDED,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"provider_org_id": provider.id},
    )
    session.commit()
    session.refresh(fiche)
    form = svc.catalogue.get(fiche.form_key)
    _notify(
        session,
        svc,
        fiche,
        org_id=provider.id,
        subject=f"Fil'R : une fiche de liaison vous a été transmise ({form.name if form else ''})",
        intro="Le Département vous a transmis une fiche de liaison sur Fil'R.",
        ctx=ctx,
        action=AuditAction.FICHE_NOTIFICATION_SENT,
        actor=user.audit_actor,
    )
    return fiche


def correct(session: Session, svc: Services, user: User, fiche: Fiche, ctx: audit.Context) -> Fiche:
    """A new draft with the values of a sent fiche, that replaces it once sent. Commits."""
    if not can_correct(user, fiche):
        raise FicheError("Cette fiche ne peut plus être corrigée.")
    values = read_values(session, svc.store, fiche)
    form = svc.catalogue.get(fiche.form_key)
    if form is not None:  # the attachments are the old fiche's: attached again to the new one
        values = {
            k: v for k, v in values.items() if (f := form.field(k)) and f.type != "attachment"
        }
    draft = Draft(fiche.form_key, fiche.departement_code, fiche.recipient_org_id, values)
    new, _ = save_draft(session, svc, user, draft, ctx)
    new.replaces_id = fiche.id
    session.commit()
    return new


# --- e-mails, reminders, purge ---------------------------------------------------------------


def _notify(
    session: Session,
    svc: Services,
    fiche: Fiche,
    *,
    org_id: str,
    subject: str,
    intro: str,
    ctx: audit.Context,
    action: AuditAction,
    actor: audit.Actor,
    details: Mapping[str, Any] | None = None,
) -> int:
    """E-mail the agents of *org_id* about *fiche*: a link, the space, nothing personal."""
    link = f"{svc.settings.base_url}/fiches/{fiche.id}"
    space = f"{fiche.departement_code} — {DEPARTEMENTS[fiche.departement_code]}"
    body = (
        f"Bonjour,\n\n{intro}\n\nEspace : {space}\n\n"
        f"Pour la consulter, connectez-vous au portail :\n{link}\n\n"
        "Ce message ne contient volontairement aucune information sur la personne concernée.\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    users = session.execute(
        sa.select(User).where(User.organisation_id == org_id, User.status == AccountStatus.ACTIVE)
    ).scalars()
    sent = failed = 0
    for user in users:
        if not user.has_role(Role.AGENT):
            continue
        if deliver(
            svc.mailer, user.email, subject, body, what="fiche mail", about=f"user {user.id}"
        ):
            sent += 1
        else:
            failed += 1
    audit.record(
        session,
        action,
        actor=actor,
        context=ctx,
        outcome=Outcome.SUCCESS if not failed else Outcome.FAILURE,
        target=_target(fiche),
        details={"sent": sent, "failed": failed, "organisation_id": org_id, **(details or {})},
    )
    session.commit()
    return sent


REMINDERS = ((7, "reminded_7_at"), (2, "reminded_2_at"))


def _due_for_reminder(session: Session, column: str, days: int, now: datetime) -> list[str]:
    attribute = getattr(Fiche, column)
    return list(
        session.execute(
            sa.select(Fiche.id).where(
                Fiche.state.in_(WAITING),
                Fiche.due_at.is_not(None),
                Fiche.due_at <= now + timedelta(days=days),
                Fiche.due_at > now,
                attribute.is_(None),
            )
        ).scalars()
    )


def waiting_reminders(session: Session, now: datetime) -> dict[str, int]:
    """How many reminders `send_reminders` would send now (dry run)."""
    return {f"j{days}": len(_due_for_reminder(session, c, days, now)) for days, c in REMINDERS}


def send_reminders(session: Session, svc: Services, now: datetime | None = None) -> dict[str, int]:
    """Remind the receiving organisation of bilatérale fiches due in 7 and in 2 days."""
    now = now or utcnow()
    report = {"j7": 0, "j2": 0}
    for days, column in REMINDERS:
        attribute = getattr(Fiche, column)
        for fiche_id in _due_for_reminder(session, column, days, now):
            claimed = session.execute(
                sa.update(Fiche)
                .where(Fiche.id == fiche_id, attribute.is_(None))
                .values({column: now})
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined] # DML: a CursorResult
            session.commit()
            if claimed != 1:
                continue
            fiche = session.get(Fiche, fiche_id)
            assert fiche is not None  # noqa: S101 - claimed above
            _notify(
                session,
                svc,
                fiche,
                org_id=fiche.recipient_org_id,
                subject=f"Fil'R : une décision est attendue sous {days} jours",
                intro=(
                    "Une fiche de liaison bilatérale attend votre décision (entrée en "
                    f"accompagnement global) : le délai de 21 jours se termine le "
                    f"{date_fr(fiche.due_at)}."
                ),
                ctx=audit.NO_CONTEXT,
                action=AuditAction.FICHE_REMINDER_SENT,
                actor=audit.SYSTEM,
                details={"days_left": days},
            )
            report[f"j{days}"] += 1
    return report


def purge(session: Session, svc: Services, now: datetime | None = None) -> int:
    """Destroy the fiches past their 90 days (drafts included): values shredded, the sealed
    inbox columns wiped; the row keeps the dates, the trail keeps the events."""
    now = now or utcnow()
    ids = list(
        session.execute(
            sa.select(Fiche.id).where(Fiche.expires_at <= now, Fiche.state != FicheState.DESTROYED)
        ).scalars()
    )
    for fiche_id in ids:
        fiche = session.get(Fiche, fiche_id)
        if fiche is None:
            continue
        key = fiche.values_key
        pieces = [a.object_key for a in attachments_of(session, fiche.id) if a.object_key]
        session.execute(
            sa.update(FicheAttachment)
            .where(FicheAttachment.fiche_id == fiche.id)
            .values(object_key=None)
            .execution_options(synchronize_session=False)
        )
        fiche.state = FicheState.DESTROYED
        fiche.destroyed_at = now
        fiche.values_key = fiche.person_sealed = fiche.person_index = None
        audit.record(
            session,
            AuditAction.FICHE_DESTROYED,
            actor=audit.SYSTEM,
            context=audit.NO_CONTEXT,
            target=_target(fiche),
            details={"reason": "expired"},
        )
        session.commit()
        for object_key in [key, *pieces]:
            _drop_values(svc.store, object_key)
    return len(ids)


@dataclass(frozen=True)
class MonthCount:
    month: str
    sent: int
    accepted: int
    refused: int
    waiting: int
    overdue: int


def _month_starts(now: datetime, months: int) -> list[datetime]:
    """The first instants of the current Paris month and the *months* - 1 before, newest
    first (the conventions' months run on Paris time)."""
    local = now.astimezone(PARIS)
    year, month = local.year, local.month
    starts = []
    for _ in range(months):
        starts.append(datetime(year, month, 1, tzinfo=PARIS).astimezone(UTC))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts


def monthly_counts(
    session: Session, user: User, *, months: int = 6, now: datetime | None = None
) -> list[MonthCount]:
    """Fiches sent or received by *user*'s organisation per month of sending (follow-up):
    one aggregate query bounded by the oldest month, whatever the number of fiches."""
    now = now or utcnow()
    mine = user.organisation_id
    starts = _month_starts(now, months)
    month = sa.case(*[(Fiche.sent_at >= start, i) for i, start in enumerate(starts)])
    decided_or_due = Fiche.state.in_(WAITING) & Fiche.due_at.is_not(None)

    def tally(condition: sa.ColumnElement[bool]) -> Any:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    rows = session.execute(
        sa.select(
            month,
            sa.func.count(),
            tally(Fiche.state == FicheState.ACCEPTED),
            tally(Fiche.state == FicheState.REFUSED),
            tally(decided_or_due & (Fiche.due_at > now)),
            tally(decided_or_due & (Fiche.due_at <= now)),
        )
        .where(
            visible_fiches(user),
            sa.or_(Fiche.sender_org_id == mine, Fiche.recipient_org_id == mine),
            Fiche.sent_at >= starts[-1],
        )
        .group_by(month)
    ).all()
    counts = []
    for index, *numbers in sorted(rows, key=lambda r: int(r[0])):
        local = starts[int(index)].astimezone(PARIS)
        key = f"{local.month:02d}/{local.year}"
        counts.append(MonthCount(key, *(int(n or 0) for n in numbers)))
    return counts


def fiches_of(session: Session, ids: Iterable[str]) -> list[Fiche]:
    return list(session.execute(sa.select(Fiche).where(Fiche.id.in_(list(ids)))).scalars())


# --- attachments -----------------------------------------------------------------------------

ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024


def attachments_of(session: Session, fiche_id: str) -> list[FicheAttachment]:
    return list(
        session.execute(
            sa.select(FicheAttachment)
            .where(FicheAttachment.fiche_id == fiche_id)
            .order_by(FicheAttachment.created_at)
        ).scalars()
    )


def live_attachment(session: Session, fiche: Fiche, field_id: str) -> FicheAttachment | None:
    """The attachment an attachment field of *fiche* holds now (None if none, or destroyed)."""
    return session.execute(
        sa.select(FicheAttachment)
        .where(
            FicheAttachment.fiche_id == fiche.id,
            FicheAttachment.field_id == field_id,
            FicheAttachment.object_key.is_not(None),
        )
        .order_by(FicheAttachment.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def attachment_label(attachment: FicheAttachment) -> str:
    return f"PDF joint ({size_fr(attachment.size)}, SHA-256 {attachment.sha256[:16]}…)"


def _scan(svc: Services, content: bytes) -> str:
    """clamd's verdict: "clean", or "bypassed" (clamd down, FILR_ANTIVIRUS_BYPASS on);
    refused otherwise (fail closed), as the habilitation forms are."""
    try:
        verdict = svc.clamd.scan([content])
    except ClamdUnavailable:
        if svc.settings.antivirus_bypass and not svc.clamd.ping():
            return "bypassed"
        raise FicheError(
            "L'antivirus est indisponible : la pièce jointe ne peut pas être vérifiée pour "
            "l'instant. Réessayez dans quelques minutes.",
            code="antivirus_unavailable",
        ) from None
    if verdict.signature is not None:
        raise FicheError(
            f"Pièce jointe refusée : l'antivirus y a détecté « {verdict.signature} ». Elle n'a "
            "pas été enregistrée.",
            code="file_infected",
        )
    return "clean"


def attach(
    session: Session,
    svc: Services,
    user: User,
    fiche: Fiche,
    field_id: str,
    content: bytes,
    ctx: audit.Context,
) -> FicheAttachment:
    """Attach a PDF (10 Mo at most; active content and antivirus checked, as a deposited PDF
    and a habilitation form are) to an attachment field of *user*'s draft; the field's value
    becomes the attachment (the previous one is destroyed). Commits."""
    form = svc.catalogue.get(fiche.form_key)
    field_ = form.field(field_id) if form else None
    if (
        form is None
        or field_ is None
        or field_.type != "attachment"
        or fiche.state != FicheState.DRAFT
        or fiche.sender_id != user.id
    ):
        raise FicheError("Cette pièce jointe ne peut pas être ajoutée à cette fiche.")
    if not content.startswith(b"%PDF-") or len(content) > ATTACHMENT_MAX_BYTES:
        raise FicheError(
            "La pièce jointe doit être un fichier PDF de 10 Mo au plus.",
            code="file_too_large" if len(content) > ATTACHMENT_MAX_BYTES else "file_refused",
        )
    finding = check_pdf(content)
    if finding is not None:
        raise FicheError(finding.message_fr, code="file_refused")
    scan = _scan(svc, content)
    values = read_values(session, svc.store, fiche)  # commits: the store has its connection
    attachment_id = new_id()
    object_key = f"fiches/{fiche.id}/pieces/{attachment_id}"
    store = svc.store
    store.keyring.ensure(fiche.departement_code)
    stored = store.put(object_key, [content], departement=fiche.departement_code)
    previous = values.get(field_id)
    new_values_key = _write_values(store, fiche, {**values, field_id: attachment_id})
    old_values_key = fiche.values_key
    try:
        won = session.execute(
            sa.update(Fiche)
            .where(
                Fiche.id == fiche.id,
                Fiche.state == FicheState.DRAFT,
                Fiche.values_key == old_values_key,
            )
            .values(values_key=new_values_key, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined] # DML: a CursorResult
            raise FicheError("Ce brouillon vient de changer : rechargez la page.")
        attachment = FicheAttachment(
            id=attachment_id,
            fiche_id=fiche.id,
            field_id=field_id,
            object_key=object_key,
            size=stored.size,
            sha256=stored.sha256,
            scan=scan,
            created_at=utcnow(),
        )
        session.add(attachment)
        replaced: str | None = None
        if isinstance(previous, str):
            old = session.get(FicheAttachment, previous)
            if old is not None and old.fiche_id == fiche.id:
                replaced, old.object_key = old.object_key, None
        audit.record(
            session,
            AuditAction.FICHE_DRAFT_SAVED,
            actor=user.audit_actor,
            context=ctx,
            target=_target(fiche),
            details={"attachment": field_id, "size": stored.size, "scan": scan},
        )
        session.commit()
    except BaseException:
        session.rollback()
        for created in (object_key, new_values_key):
            _drop_values(store, created)
        raise
    for dropped in (old_values_key, replaced):
        _drop_values(store, dropped)
    session.refresh(fiche)
    return attachment


def open_attachment(
    session: Session,
    svc: Services,
    user: User,
    fiche: Fiche,
    attachment_id: str,
    ctx: audit.Context,
) -> tuple[FicheAttachment, bytes] | None:
    """The decrypted PDF of an attachment of *fiche* (which *user* may see), audited; None
    when the fiche has no such attachment. Commits."""
    attachment = (
        session.get(FicheAttachment, attachment_id) if is_well_formed_id(attachment_id) else None
    )
    if attachment is None or attachment.fiche_id != fiche.id or attachment.object_key is None:
        return None
    audit.record(
        session,
        AuditAction.FICHE_VIEWED,
        actor=user.audit_actor,
        context=ctx,
        target=_target(fiche),
        details={"attachment": attachment.field_id},
    )
    session.commit()
    return attachment, b"".join(svc.store.open(attachment.object_key))
