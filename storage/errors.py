"""The one error family of the storage package."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by the storage package."""


class InvalidObjectKey(StorageError, ValueError):
    """An object key or prefix does not match the strict pattern of generated keys."""


class InvalidConfiguration(StorageError, ValueError):
    """A store URL, an option or a secret is malformed."""


class ObjectNotFound(StorageError):
    """No object is stored under this key."""


class ObjectShredded(ObjectNotFound):
    """The object's data key was destroyed: its content can never be read again."""


class ObjectExists(StorageError):
    """An encrypted object already exists under this key (keys are never reused)."""


class StorageUnavailable(StorageError):
    """The backend (object store or key database) cannot be reached or timed out."""


class IntegrityError(StorageError):
    """Stored data failed authentication: tampered, truncated, misplaced or corrupt."""


class ObjectCorrupted(IntegrityError):
    """A stored object failed authentication while being read: which one, and where.

    `segment` is the index (from 0) of the first segment that failed; None when the header or
    the recorded digest did. The message names only these ids, never any content.
    """

    def __init__(self, reason: str, *, object_key: str, segment: int | None) -> None:
        where = "header" if segment is None else f"segment {segment}"
        super().__init__(f"{reason} (object {object_key}, {where})")
        self.reason = reason
        self.object_key = object_key
        self.segment = segment


class KeyringError(StorageError):
    """Keyring misuse: unknown département, wrong master key, bad département code."""


class UnknownDepartement(KeyringError):
    """No key-encryption key exists yet for this département."""


class KekVersionExists(KeyringError):
    """A key-encryption key with this département and version is already stored."""


class WrongMasterKey(KeyringError):
    """The département keys were wrapped by another master key than the one configured."""
