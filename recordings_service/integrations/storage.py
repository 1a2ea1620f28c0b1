"""Where the audio is kept: one interface, two backends (a local directory, S3-compatible storage).

``storage_from_config`` picks the backend ``AUDIO_STORAGE_URL`` names:

- unset: the directory ``<instance>/audio``;
- ``file:///path``: that directory;
- ``s3://bucket/prefix``: object storage through boto3, which reads its own ``AWS_*`` settings
  (credentials, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3`` for a store other
  than AWS).

Both backends keep an object under the key the caller gives. Writing a key again replaces its object,
so a retried write never leaves two copies. ``put`` writes, then checks what the store holds (size
and SHA-256) against what it was given, and only then returns what the caller records. Every failure
of the store itself (unreachable, refused, out of space) is ``StorageUnavailable``: try again later.

Why boto3: it is the AWS SDK, kept by AWS; its transfer manager streams a file object up in parts
(multipart above a threshold) without reading it whole, and it reads the usual ``AWS_*`` settings,
endpoint URL included, itself. It is synchronous, which suits gunicorn's gevent workers (s3fs and
obstore bring an asyncio loop or a Rust runtime of their own into them).

SHA-256 is checked by reading the object back and hashing it, on both backends. S3's own SHA-256
checksum was not used: for a multipart upload it is a checksum of the parts' checksums, not of the
object, and moto (the tests' S3 peer) stores a checksum the client supplies without checking it
(moto/s3/responses.py, ``_get_checksum``), so a test could not show it catching anything. boto3's
default CRC32 checksum still guards every request body on its way in.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

import boto3
import boto3.exceptions
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from ..exceptions import (
    InvalidKey,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)

CHUNK_SIZE = 1024 * 1024
MB = 1024 * 1024

# S3 requests: a store that does not answer is reported within seconds, not waited on forever;
# boto3's standard retry mode tries each request three times in all, with backoff.
S3_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "total_max_attempts": 3},
    user_agent_extra="recordings-service",
)
# Objects of 5 MiB (S3's smallest part) and more go up in 5 MiB parts, one at a time in the calling
# thread (gevent workers): the transfer manager holds a part, and a copy of it, in memory for its
# retries, so about 10 MiB whatever the object's size. 10,000 parts of 5 MiB: objects up to 48 GiB.
S3_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=5 * MB,
    multipart_chunksize=5 * MB,
    use_threads=False,
    preferred_transfer_client="classic",
)


@dataclass(frozen=True)
class StoredObject:
    """An object as written and checked: what the caller records."""

    key: str
    size: int
    sha256: str  # hex, of the bytes the store holds
    content_type: str


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says of an object without reading it."""

    key: str
    size: int


class Storage(Protocol):
    """Audio kept under keys such as ``recordings/12/34.mp3`` (``audio_key``)."""

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        content_type: str,
        size: int | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Store ``source`` (read to its end, a chunk at a time) under ``key``, replacing any object.

        Then check the stored object against what was read, and against ``size`` and ``sha256``
        when given. When they differ: VerificationFailed, and the new object is not kept (a local
        directory keeps the object the key had; S3, where the write already replaced it, keeps none).
        """

    def read(self, key: str, offset: int = 0, length: int | None = None) -> Chunks:
        """The object's bytes from ``offset`` (``length`` of them, or to its end), in chunks.

        Raises ObjectNotFound, or RangeNotSatisfiable when a range starting at or past the end is
        asked for, before the first chunk. Close the result when not reading it to the end.
        """

    def stat(self, key: str) -> ObjectInfo:
        """The object's size; ObjectNotFound when there is none."""

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; nothing happens when there is none."""


class Chunks(Iterator[bytes]):
    """An object's bytes a chunk at a time; reading to the end or ``close()`` releases the stream.

    A WSGI server closes the iterable it serves, so this can be handed to a response as it is.
    """

    def __init__(self, stream, remaining: int | None, failures: tuple[type[Exception], ...], where: str):
        self._stream = stream
        self._remaining = remaining
        self._failures = failures
        self._where = where
        self._closed = False

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        want = CHUNK_SIZE if self._remaining is None else min(CHUNK_SIZE, self._remaining)
        try:
            chunk = self._stream.read(want) if want else b""
        except self._failures as error:
            self.close()
            raise StorageUnavailable(f"reading {self._where} failed: {error}") from error
        if not chunk:
            self.close()
            raise StopIteration
        if self._remaining is not None:
            self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stream.close()

    def __enter__(self) -> Chunks:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# A leg's audio of a format that has no extension of its own (the type it is served with says what it is).
FALLBACK_EXTENSION = ".bin"


def audio_key(recording_pk: int, leg_pk: int, extension: str) -> str:
    """Where a leg's audio is kept: named by the recording's and the leg's primary keys, never by ids a
    caller chose (two legs' session ids, ``x`` and ``x.mp3``, say, must not meet in one key)."""
    return f"recordings/{recording_pk}/{leg_pk}{extension or FALLBACK_EXTENSION}"


def check_key(key: str) -> PurePosixPath:
    """Return ``key`` as a relative path of plain names; InvalidKey when it is anything else."""
    parts = key.split("/")
    if not key or any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        raise InvalidKey(f"{key!r} is not a storage key (plain names separated by /)")
    return PurePosixPath(*parts)


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 1):
        raise ValueError(f"not a byte range: offset {offset}, length {length}")


def _verify(key: str, *, given: tuple[int, str], stored: tuple[int, str], size, sha256) -> None:
    # ``given``: what was read from the source; ``stored``: what the store holds now.
    if size is not None and given[0] != size:
        raise VerificationFailed(f"{key}: the source held {given[0]} bytes, {size} were expected")
    if sha256 is not None and given[1] != sha256.lower():
        raise VerificationFailed(f"{key}: the source's SHA-256 is not the one expected")
    if stored != given:
        raise VerificationFailed(f"{key}: the stored object ({stored[0]} bytes) is not what was written")


def _digest(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        digest.update(chunk)
    return size, digest.hexdigest()


class _HashingReader:
    """A read-only view of a file object that counts and hashes what is read through it.

    It does not seek, so the transfer manager reads it once, in order (and keeps each part in
    memory for its retries).
    """

    def __init__(self, source: BinaryIO):
        self._source = source
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        data = self._source.read(amount)
        self._digest.update(data)
        self.size += len(data)
        return data

    def result(self) -> tuple[int, str]:
        return self.size, self._digest.hexdigest()


class LocalStorage:
    """Objects as files under one directory; each write lands whole or not at all (``os.replace``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(check_key(key))
        # A symbolic link inside the directory must not lead out of it either.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey(f"{key!r} leads out of the storage directory")
        return path

    def put(self, key, source, *, content_type, size=None, sha256=None) -> StoredObject:
        path = self._path(key)
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # In the same directory, so that os.replace is a rename on one file system; the leading
            # dot keeps it out of every key's way (keys' names never start with one).
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            with open(temporary, "rb") as written_back:
                stored = _digest(iter(lambda: written_back.read(CHUNK_SIZE), b""))
            _verify(key, given=(written, digest.hexdigest()), stored=stored, size=size, sha256=sha256)
            os.replace(temporary, path)
            temporary = None
            _fsync_directory(path.parent)
        except OSError as error:
            raise StorageUnavailable(f"writing {key} under {self.root} failed: {error}") from error
        finally:
            if temporary is not None:
                _remove_quietly(temporary)
        return StoredObject(key=key, size=stored[0], sha256=stored[1], content_type=content_type)

    def read(self, key, offset=0, length=None) -> Chunks:
        _check_range(offset, length)
        path = self._path(key)
        try:
            stream = open(path, "rb")  # closed by Chunks
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object under {key}") from None
        except OSError as error:
            raise StorageUnavailable(f"reading {key} failed: {error}") from error
        try:
            total = os.fstat(stream.fileno()).st_size
            if (offset or length is not None) and offset >= total:
                raise RangeNotSatisfiable(f"{key} has {total} bytes; a range from {offset} was asked for")
            stream.seek(offset)
        except BaseException:
            stream.close()
            raise
        return Chunks(stream, length, (OSError,), key)

    def stat(self, key) -> ObjectInfo:
        try:
            status = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object under {key}") from None
        except OSError as error:
            raise StorageUnavailable(f"reading {key} failed: {error}") from error
        return ObjectInfo(key=key, size=status.st_size)

    def delete(self, key) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except NotADirectoryError:
            pass
        except OSError as error:
            raise StorageUnavailable(f"deleting {key} failed: {error}") from error


def _fsync_directory(directory: Path) -> None:
    # The rename itself is on disk only once the directory is.
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_S3_FAILURES = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    boto3.exceptions.Boto3Error,
)


class S3Storage:
    """Objects in an S3 bucket (AWS or any S3-compatible store), under an optional prefix."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Clients are thread-safe; a session of its own keeps boto3's default session out of it.
        self.client = client or boto3.session.Session().client("s3", config=S3_CLIENT_CONFIG)

    @classmethod
    def from_url(cls, url: str, client=None) -> S3Storage:
        """``s3://bucket/prefix`` (as AUDIO_STORAGE_URL's check in config.py takes it): credentials,
        region and endpoint come from boto3's own settings."""
        parsed = urllib.parse.urlsplit(url)
        return cls(parsed.hostname, parsed.path, client)

    def __repr__(self) -> str:
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def _name(self, key: str) -> str:
        relative = str(check_key(key))
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _failure(self, doing: str, key: str, error: Exception) -> StorageError:
        if isinstance(error, botocore.exceptions.ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFound(f"no object under {key}")
            if code == "InvalidRange":
                return RangeNotSatisfiable(f"{key}: {error}")
        return StorageUnavailable(f"{doing} {key} in s3://{self.bucket} failed: {error}")

    def put(self, key, source, *, content_type, size=None, sha256=None) -> StoredObject:
        name = self._name(key)
        reader = _HashingReader(source)
        try:
            self.client.upload_fileobj(
                reader, self.bucket, name, ExtraArgs={"ContentType": content_type}, Config=S3_TRANSFER_CONFIG
            )
        except _S3_FAILURES as error:
            raise self._failure("writing", key, error) from error
        except OSError as error:  # reading the source; S3 keeps the object it had, if any
            raise StorageUnavailable(f"writing {key}: reading the source failed: {error}") from error
        try:
            with self.read(key) as chunks:
                stored = _digest(chunks)
            _verify(key, given=reader.result(), stored=stored, size=size, sha256=sha256)
        except VerificationFailed:
            self.delete(key)
            raise
        return StoredObject(key=key, size=stored[0], sha256=stored[1], content_type=content_type)

    def read(self, key, offset=0, length=None) -> Chunks:
        _check_range(offset, length)
        arguments = {"Bucket": self.bucket, "Key": self._name(key)}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            arguments["Range"] = f"bytes={offset}-{end}"
        try:
            response = self.client.get_object(**arguments)
        except _S3_FAILURES as error:
            raise self._failure("reading", key, error) from error
        return Chunks(response["Body"], None, (botocore.exceptions.BotoCoreError, OSError), key)

    def stat(self, key) -> ObjectInfo:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except _S3_FAILURES as error:
            raise self._failure("reading", key, error) from error
        return ObjectInfo(key=key, size=response["ContentLength"])

    def delete(self, key) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except _S3_FAILURES as error:
            failure = self._failure("deleting", key, error)
            if not isinstance(failure, ObjectNotFound):
                raise failure from error


def storage_from_config(config: Mapping, instance_path: str | os.PathLike) -> LocalStorage | S3Storage:
    """The storage ``AUDIO_STORAGE_URL`` names (``<instance_path>/audio`` when unset); config.py has
    checked it is a file:// or s3:// URL."""
    url = config.get("AUDIO_STORAGE_URL")
    if not url:
        return LocalStorage(Path(instance_path) / "audio")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return LocalStorage(urllib.parse.unquote(parsed.path))
    return S3Storage.from_url(url)
