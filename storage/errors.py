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


class KeyringError(StorageError):
    """Keyring misuse: unknown département, wrong master key, bad département code."""


class UnknownDepartement(KeyringError):
    """No key-encryption key exists yet for this département."""


class KekVersionExists(KeyringError):
    """A key-encryption key with this département and version is already stored."""


class WrongMasterKey(KeyringError):
    """The département keys were wrapped by another master key than the one configured."""
