"""Audio storage (integrations/storage.py): every test runs on both backends, a local directory and
S3 (moto's server on loopback, a real S3 protocol peer), through the ``storage`` fixture."""

import hashlib
import io
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from recordings_service.exceptions import (
    InvalidKey,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageUnavailable,
    VerificationFailed,
)
from recordings_service.integrations.storage import LocalStorage, S3Storage, audio_key, storage_from_config
from testkit.audio import EVERYDAY, RECORDED
from testkit.s3 import moto_s3

KEY = "recordings/conf_1234567890/ATVId_aadedf81fb9437cabae902bb08d32b7b.mp3"
MB = 1024 * 1024
AUDIO = RECORDED.data  # for the tests whose bytes do not matter


@pytest.fixture(params=EVERYDAY, ids=lambda recording: recording.name)
def audio(request) -> bytes:
    """A recording's bytes: the 22 kHz call, 8 kHz MP3 and 8 kHz WAV."""
    return request.param.data


def read_all(storage, key, *args) -> bytes:
    return b"".join(storage.read(key, *args))


def stored_names(storage) -> list[str]:
    """Every object the backend holds, temporary files included: what a retry could leave behind."""
    if isinstance(storage, LocalStorage):
        return sorted(
            str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file()
        )
    listing = storage.client.list_objects_v2(Bucket=storage.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_what_is_put_is_read_back_identical(storage, audio):
    stored = storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    assert (stored.key, stored.size, stored.sha256) == (KEY, len(audio), hashlib.sha256(audio).hexdigest())
    assert stored.content_type == "audio/mpeg"
    body = read_all(storage, KEY)
    assert body == audio
    assert storage.stat(KEY).size == len(audio)


def test_a_byte_range_is_read(storage, audio):
    storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    assert read_all(storage, KEY, 100, 50) == audio[100:150]
    assert read_all(storage, KEY, len(audio) - 153) == audio[-153:]
    assert read_all(storage, KEY, len(audio) - 53, 1_000) == audio[-53:]  # cut at the end, as HTTP does
    assert read_all(storage, KEY, 0, 1) == audio[:1]


def test_a_range_past_the_end_is_not_satisfiable(storage, audio):
    storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    with pytest.raises(RangeNotSatisfiable):
        storage.read(KEY, len(audio))


def test_each_legs_audio_has_a_key_of_its_own_with_an_extension(storage):
    keys = [audio_key(7, 8, ".mp3"), audio_key(7, 9, ""), audio_key(78, 9, ".wav")]
    for number, key in enumerate(keys):
        storage.put(key, io.BytesIO(b"leg %d" % number), content_type="audio/mpeg")

    assert keys == ["recordings/7/8.mp3", "recordings/7/9.bin", "recordings/78/9.wav"]
    assert [read_all(storage, key) for key in keys] == [b"leg 0", b"leg 1", b"leg 2"]


def test_putting_twice_under_one_key_leaves_one_object(storage, audio):
    storage.put(KEY, io.BytesIO(b"an earlier attempt"), content_type="audio/mpeg")
    storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    assert read_all(storage, KEY) == audio
    assert len(stored_names(storage)) == 1


def test_a_deleted_object_is_not_found_and_deleting_again_is_fine(storage, audio):
    storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    storage.delete(KEY)
    storage.delete(KEY)

    with pytest.raises(ObjectNotFound):
        storage.read(KEY)
    with pytest.raises(ObjectNotFound):
        storage.stat(KEY)
    assert stored_names(storage) == []


def test_an_object_never_stored_is_not_found(storage):
    with pytest.raises(ObjectNotFound):
        storage.read("recordings/conf_0/none.mp3")


def test_a_source_unlike_what_was_expected_is_refused_and_not_kept(storage, audio):
    with pytest.raises(VerificationFailed):
        storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg", sha256="0" * 64)
    with pytest.raises(VerificationFailed):
        storage.put(KEY, io.BytesIO(audio[:-1]), content_type="audio/mpeg", size=len(audio))

    with pytest.raises(ObjectNotFound):
        storage.stat(KEY)
    assert stored_names(storage) == []


def test_an_object_stored_unlike_what_was_written_is_refused_and_not_kept(storage, monkeypatch, audio):
    # The store (a disk, or bytes changed on their way to S3) keeps something else than was given.
    if isinstance(storage, LocalStorage):
        real_fsync = os.fsync

        def corrupting_fsync(handle):
            if os.path.isfile(f"/proc/self/fd/{handle}"):
                os.pwrite(handle, b"\xff", 1000)
            real_fsync(handle)

        monkeypatch.setattr(os, "fsync", corrupting_fsync)
    else:

        def corrupt_in_transit(params, **kwargs):
            params["Body"] = io.BytesIO(audio[:1000] + b"\xff" + audio[1001:])

        storage.client.meta.events.register("before-parameter-build.s3.PutObject", corrupt_in_transit)

    with pytest.raises(VerificationFailed, match="not what was written"):
        storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    with pytest.raises(ObjectNotFound):
        storage.stat(KEY)
    assert stored_names(storage) == []


def test_the_expected_size_and_hash_are_accepted(storage, audio):
    sha256 = hashlib.sha256(audio).hexdigest()
    stored = storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg", size=len(audio), sha256=sha256)

    assert stored.sha256 == sha256


class FailingSource(io.RawIOBase):
    """Gives some bytes, then fails as a disk or a cut download would."""

    def __init__(self, good: bytes):
        self._good = io.BytesIO(good)

    def read(self, amount=-1):
        data = self._good.read(amount)
        if not data:
            raise OSError("the source broke")
        return data


def test_a_failed_write_keeps_the_previous_object_whole(storage, audio):
    storage.put(KEY, io.BytesIO(audio), content_type="audio/mpeg")

    with pytest.raises(StorageUnavailable):
        storage.put(KEY, FailingSource(b"half a new recording"), content_type="audio/mpeg")

    assert read_all(storage, KEY) == audio
    assert len(stored_names(storage)) == 1


@pytest.mark.parametrize(
    "key", ["../escape.mp3", "recordings/../../escape.mp3", "/etc/passwd", ".hidden", "a//b", ""]
)
def test_keys_cannot_escape_or_hide(storage, key):
    with pytest.raises(InvalidKey):
        storage.put(key, io.BytesIO(AUDIO), content_type="audio/mpeg")
    with pytest.raises(InvalidKey):
        storage.read(key)


def test_a_symbolic_link_does_not_lead_out_of_the_local_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = LocalStorage(tmp_path / "audio")
    storage.root.mkdir()
    (storage.root / "recordings").symlink_to(outside)

    with pytest.raises(InvalidKey):
        storage.put(KEY, io.BytesIO(AUDIO), content_type="audio/mpeg")

    assert list(outside.iterdir()) == []


class GeneratedSource(io.RawIOBase):
    """``size`` bytes made as they are read, never held whole."""

    def __init__(self, size: int):
        self.remaining = size
        self.block = bytes(range(256)) * 4096  # 1 MiB

    def readable(self):
        return True

    def read(self, amount=-1):
        amount = self.remaining if amount is None or amount < 0 else min(amount, self.remaining)
        data = (self.block * (amount // len(self.block) + 1))[:amount]
        self.remaining -= amount
        return data


@pytest.mark.slow
def test_a_large_object_goes_through_without_being_held_in_memory(storage):
    size = 50 * MB
    expected = hashlib.sha256()
    source = GeneratedSource(size)
    while chunk := source.read(MB):
        expected.update(chunk)

    tracemalloc.start()
    try:
        stored = storage.put(KEY, GeneratedSource(size), content_type="audio/mpeg")
        digest = hashlib.sha256()
        for chunk in storage.read(KEY):
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == size and stored.sha256 == expected.hexdigest() == digest.hexdigest()
    # The S3 backend holds one 5 MiB part (and boto3's copy of it) at a time, whatever the size.
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB storing and reading {size / MB:.0f} MB"


def test_when_the_s3_server_goes_away_every_operation_says_try_again(monkeypatch, tmp_path):
    with moto_s3() as server:
        admin = server.client()
        admin.create_bucket(Bucket="audio")
        admin.close()
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        storage = storage_from_config({"AUDIO_STORAGE_URL": "s3://audio/recordings"}, tmp_path)
        storage.put(KEY, io.BytesIO(AUDIO), content_type="audio/mpeg")
        chunks = storage.read(KEY)

        server.stop()

        started = time.monotonic()
        for operation in (
            lambda: storage.put(KEY, io.BytesIO(AUDIO), content_type="audio/mpeg"),
            lambda: storage.read(KEY),
            lambda: storage.stat(KEY),
            lambda: storage.delete(KEY),
        ):
            with pytest.raises(StorageUnavailable) as raised:
                operation()
            assert raised.value.retryable
        chunks.close()
        storage.client.close()
    assert time.monotonic() - started < 30


def test_storage_follows_audio_storage_url(tmp_path, s3_server, monkeypatch):
    default = storage_from_config({"AUDIO_STORAGE_URL": None}, tmp_path / "instance")
    chosen = storage_from_config({"AUDIO_STORAGE_URL": f"file://{tmp_path}/elsewhere"}, tmp_path / "instance")
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    s3 = storage_from_config({"AUDIO_STORAGE_URL": "s3://audio-from-config/some/prefix/"}, tmp_path)

    assert isinstance(default, LocalStorage) and default.root == (tmp_path / "instance" / "audio").resolve()
    assert isinstance(chosen, LocalStorage) and chosen.root == Path(f"{tmp_path}/elsewhere").resolve()
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("audio-from-config", "some/prefix")
    # boto3 found the endpoint in AWS_ENDPOINT_URL itself: the object is on the moto server.
    s3.client.create_bucket(Bucket="audio-from-config")
    s3.put("a.mp3", io.BytesIO(AUDIO), content_type="audio/mpeg")
    admin = s3_server.client()
    head = admin.head_object(Bucket="audio-from-config", Key="some/prefix/a.mp3")
    admin.close()
    s3.client.close()
    assert (head["ContentLength"], head["ContentType"]) == (len(AUDIO), "audio/mpeg")
