"""Framework-free encrypted object storage: object stores, envelope encryption and the keyring.

Never imports Flask: the portal builds these objects from its settings and passes them in.
"""

from storage.base import MAX_KEY_LENGTH, ObjectStore, validate_key, validate_prefix
from storage.encrypted import EncryptedStore, StoredObject
from storage.errors import (
    IntegrityError,
    InvalidConfiguration,
    InvalidObjectKey,
    KekVersionExists,
    KeyringError,
    ObjectCorrupted,
    ObjectExists,
    ObjectNotFound,
    ObjectShredded,
    StorageError,
    StorageUnavailable,
    UnknownDepartement,
    WrongMasterKey,
)
from storage.factory import open_store
from storage.keyring import (
    Keyring,
    MasterKey,
    MasterRewrapReport,
    NewDataKey,
    RewrapReport,
    generate_master_key_file,
    validate_departement,
)
from storage.keystore import (
    DataKeyRecord,
    KekRecord,
    KeyStore,
    MemoryKeyStore,
    Rewrapped,
    RewrappedKek,
)
from storage.local import LocalStore
from storage.memory import MemoryStore
from storage.s3 import S3Store
from storage.sql import SqlKeyStore
from storage.stream import DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_KEY_LENGTH",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "DataKeyRecord",
    "EncryptedStore",
    "IntegrityError",
    "InvalidConfiguration",
    "InvalidObjectKey",
    "KekRecord",
    "KekVersionExists",
    "KeyStore",
    "Keyring",
    "KeyringError",
    "LocalStore",
    "MasterKey",
    "MasterRewrapReport",
    "MemoryKeyStore",
    "MemoryStore",
    "NewDataKey",
    "ObjectCorrupted",
    "ObjectExists",
    "ObjectNotFound",
    "ObjectShredded",
    "ObjectStore",
    "RewrapReport",
    "Rewrapped",
    "RewrappedKek",
    "S3Store",
    "SqlKeyStore",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "UnknownDepartement",
    "WrongMasterKey",
    "generate_master_key_file",
    "open_store",
    "validate_departement",
    "validate_key",
    "validate_prefix",
]
