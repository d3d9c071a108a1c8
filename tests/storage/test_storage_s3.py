"""S3Store on a real SeaweedFS: multipart uploads, aborts, outages and crashes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storage import (
    EncryptedStore,
    IntegrityError,
    Keyring,
    MasterKey,
    MemoryKeyStore,
    ObjectNotFound,
    S3Store,
    StorageError,
    StorageUnavailable,
    open_store,
)
from tests.storage.helpers import PART, chunked, make_s3_store, random_bytes, read_all
from tests.support.seaweedfs import S3Endpoint, running_seaweedfs

pytestmark = pytest.mark.s3


@pytest.fixture
def s3(seaweedfs: S3Endpoint) -> Iterator[S3Store]:
    with make_s3_store(seaweedfs) as store:
        yield store


def test_large_objects_go_up_in_parts_and_leave_no_pending_upload(s3: S3Store) -> None:
    data = random_bytes(2 * PART + 1)

    s3.put("big", chunked(data, 1024 * 1024))

    etag = s3.client.head_object(Bucket=s3.bucket, Key=s3.prefix + "big")["ETag"]
    assert etag.strip('"').endswith("-3")  # an S3 multipart ETag: three parts
    assert read_all(s3, "big") == data
    assert list(s3.incomplete_uploads()) == []


def test_keys_live_under_the_store_prefix(s3: S3Store, seaweedfs: S3Endpoint) -> None:
    s3.put("a/b", [b"1"])

    names = [
        item["Key"]
        for item in s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.prefix).get(
            "Contents", []
        )
    ]

    assert names == [s3.prefix + "a/b"]
    with make_s3_store(seaweedfs) as other:
        assert not other.exists("a/b")


def test_failing_source_aborts_the_multipart_upload(s3: S3Store) -> None:
    def source() -> Iterator[bytes]:
        yield random_bytes(PART)
        yield random_bytes(PART)
        yield random_bytes(PART)
        raise ConnectionResetError("the client hung up")

    with pytest.raises(ConnectionResetError):
        s3.put("aborted", source())

    assert not s3.exists("aborted")
    assert list(s3.incomplete_uploads()) == []


def test_failing_part_upload_aborts_the_multipart_upload(
    s3: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a service that refuses the second part
    upload_part = s3.client.upload_part

    def flaky_upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            response: Any = {"Error": {"Code": "InternalError"}}
            raise ClientError(response, "UploadPart")
        return upload_part(**kwargs)

    monkeypatch.setattr(s3.client, "upload_part", flaky_upload_part)

    # When a large object is uploaded, Then the upload fails and is aborted on the server
    with pytest.raises(StorageUnavailable):
        s3.put("refused", chunked(random_bytes(3 * PART), PART))
    assert not s3.exists("refused")
    assert list(s3.incomplete_uploads()) == []


def test_s3_stopped_before_upload_gives_storage_unavailable(
    private_seaweedfs: S3Endpoint,
) -> None:
    # Given a store that worked, and an encrypted store over it
    store = make_s3_store(private_seaweedfs, connect_timeout=1, max_attempts=2)
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())
    keyring.ensure("62")
    encrypted = EncryptedStore(store, keyring)
    store.put("before", [b"x"])

    # When the service is stopped
    private_seaweedfs.stop()

    # Then every operation reports it as unavailable, and no key is saved for a failed put
    with pytest.raises(StorageUnavailable):
        store.put("small", [b"x"])
    with pytest.raises(StorageUnavailable):
        store.put("large", chunked(random_bytes(2 * PART), PART))
    with pytest.raises(StorageUnavailable):
        store.get("before")
    with pytest.raises(StorageUnavailable):
        store.size("before")
    with pytest.raises(StorageUnavailable):
        store.exists("before")
    with pytest.raises(StorageUnavailable):
        store.delete("before")
    with pytest.raises(StorageUnavailable):
        list(store.list())
    with pytest.raises(StorageUnavailable):
        encrypted.put("deposit", [b"secret"], departement="62")
    assert keyring.keystore.get_data_key("deposit") is None
    store.close()


def test_s3_killed_mid_multipart_upload_leaves_nothing_after_abort(
    private_seaweedfs: S3Endpoint,
) -> None:
    # Given an encrypted upload of six parts to a service that crashes after the third
    endpoint = private_seaweedfs
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())
    keyring.ensure("62")
    store = make_s3_store(endpoint, prefix="crash", connect_timeout=1, max_attempts=2)

    def source() -> Iterator[bytes]:
        for number in range(6):
            if number == 3:
                endpoint.kill()  # SIGKILL while earlier parts may still be in flight
            yield random_bytes(PART)

    # When the upload runs
    with pytest.raises(StorageUnavailable):
        EncryptedStore(store, keyring).put("deposit", source(), departement="62")
    store.close()

    # Then no key was saved; once the service is back on the same data there is no object,
    # but the upload it could not be told to abort while dead is still pending there, until
    # the cleanup job aborts it; after which nothing is left
    assert keyring.keystore.get_data_key("deposit") is None
    with (
        running_seaweedfs(endpoint.workdir) as restarted,
        make_s3_store(restarted, prefix="crash") as store,
    ):
        assert not store.exists("deposit")
        pending = [key for key, _, _ in store.incomplete_uploads()]
        assert pending == ["deposit"]
        assert store.abort_incomplete_uploads(older_than=timedelta(0)) == 1
        assert list(store.incomplete_uploads()) == []
        assert not store.exists("deposit")
        assert list(store.list()) == []


def test_s3_killed_mid_download_never_returns_a_complete_looking_file(
    private_seaweedfs: S3Endpoint,
) -> None:
    # Given an encrypted object being downloaded
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())
    keyring.ensure("62")
    store = make_s3_store(private_seaweedfs, connect_timeout=1, max_attempts=2)
    encrypted = EncryptedStore(store, keyring)
    data = random_bytes(64 * 1024 * 1024)
    encrypted.put("deposit", chunked(data, 1024 * 1024), departement="62")
    stream = encrypted.open("deposit")
    received = [next(stream)]

    # When the service dies in the middle
    private_seaweedfs.kill()

    # Then the reader gets an error before the end, and only authentic leading bytes before it
    with pytest.raises((StorageUnavailable, IntegrityError)):
        for chunk in stream:
            received.append(chunk)
    got = b"".join(received)
    assert len(got) < len(data)
    assert got == data[: len(got)]
    store.close()


def test_abort_job_leaves_young_uploads_alone(s3: S3Store) -> None:
    upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + "young")

    assert s3.abort_incomplete_uploads(older_than=timedelta(hours=1)) == 0
    assert [key for key, _, _ in s3.incomplete_uploads()] == ["young"]
    assert s3.abort_incomplete_uploads(older_than=timedelta(0)) == 1
    assert list(s3.incomplete_uploads()) == []
    assert upload["UploadId"]


def test_abort_job_aborts_young_uploads_that_nothing_claims_and_counts_in_a_dry_run(
    s3: S3Store,
) -> None:
    for key in ("claimed", "orphaned"):
        s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + key)
    asked: list[list[str]] = []

    def in_progress(keys: Any) -> set[str]:
        asked.append(sorted(keys))
        return {"claimed"}

    hour = timedelta(hours=1)
    assert s3.abort_incomplete_uploads(hour, in_progress=in_progress, dry_run=True) == 1
    assert len(list(s3.incomplete_uploads())) == 2
    assert s3.abort_incomplete_uploads(hour, in_progress=in_progress) == 1
    assert [key for key, _, _ in s3.incomplete_uploads()] == ["claimed"]
    assert asked == [["claimed", "orphaned"]] * 2
    # An upload listed but gone when aborted (another server's job was first): the service
    # answers NoSuchUpload, which is neither an error nor counted twice
    listed = [("gone", "no-such-upload", datetime(2026, 1, 1, tzinfo=UTC))]
    s3.incomplete_uploads = lambda: iter(listed)  # type: ignore[method-assign]
    assert s3.abort_incomplete_uploads(timedelta(0)) == 0


def test_wrong_credentials_are_a_storage_error_not_unavailable(seaweedfs: S3Endpoint) -> None:
    with (
        make_s3_store(seaweedfs, secret_key="wrong" * 8) as store,
        pytest.raises(StorageError) as e,
    ):
        store.put("x", [b"1"])

    assert type(e.value) is StorageError


def test_open_store_builds_an_s3_store_from_a_url(seaweedfs: S3Endpoint) -> None:
    store = open_store(
        f"s3://{seaweedfs.bucket}/from-url/",
        endpoint_url=seaweedfs.endpoint_url,
        region=seaweedfs.region,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    )
    assert isinstance(store, S3Store)
    with store:
        store.put("k", [b"v"])
        assert read_all(store, "k") == b"v"
        assert store.prefix == "from-url/"
        store.delete("k")
        with pytest.raises(ObjectNotFound):
            store.get("k")
