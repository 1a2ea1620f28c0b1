"""What integrations/audio_format.py takes for a recording: every format telephony systems write, at their
length, and nothing that is not audio or claims more audio than its bytes hold."""

import tempfile

import pytest

from recordings_service.exceptions import InvalidAudio
from recordings_service.integrations.audio_format import inspect
from testkit.audio import (
    ACCEPTED,
    FIXTURES,
    HALF_SECOND,
    HTML_PAGE,
    RECORDED,
    amr,
    broken_mp4,
    broken_wavpack,
    flac_of_long_blocks,
    lying_flac,
    lying_mp3,
    lying_wav,
    wav_at,
)


def inspected(data: bytes):
    """``inspect`` on ``data`` in a nameless temporary file, as the fetch job hands it over."""
    with tempfile.TemporaryFile() as file:
        file.write(data)
        return inspect(file)


@pytest.mark.parametrize("recording", ACCEPTED, ids=lambda recording: recording.name)
def test_mp3_of_every_rate_and_wav_of_every_telephone_codec_are_read(recording):
    found = inspected(recording.data)

    assert (round(found.seconds), found.content_type) == (recording.duration, recording.content_type)


@pytest.mark.parametrize(
    ("name", "content_type", "extension"),
    [
        ("wav-8k-gsm.wav", "audio/wav", ".wav"),
        ("wav-8k-adpcm.wav", "audio/wav", ".wav"),
        ("ogg-opus.opus", "audio/ogg", ".opus"),
        ("ogg-vorbis.ogg", "audio/ogg", ".ogg"),
        ("ogg-speex.spx", "audio/ogg", ".ogg"),
        ("webm-opus.webm", "audio/webm", ".webm"),
        ("m4a-aac.m4a", "audio/mp4", ".m4a"),
        ("adts-aac.aac", "audio/aac", ".aac"),
        ("flac-8k.flac", "audio/flac", ".flac"),
    ],
)
def test_the_other_formats_telephony_systems_write_are_read(name, content_type, extension):
    found = inspected((FIXTURES / name).read_bytes())

    assert (found.content_type, found.extension) == (content_type, extension)
    assert 3.3 <= found.seconds <= 3.5  # the spoken sentence, whatever each codec adds at its ends


def test_amr_is_read():
    found = inspected(amr())

    assert (found.seconds, found.content_type, found.extension) == (pytest.approx(1.5), "audio/amr", ".amr")


def test_an_untagged_8_khz_mp3_is_measured_by_its_frames():
    found = inspected((FIXTURES / "mp3-8k.mp3").read_bytes())

    assert found.seconds == pytest.approx(3.313, abs=0.001)  # the encoder's padding left out, as players do


def test_a_recording_with_broken_frames_is_read_without_them():
    whole = (FIXTURES / "mp3-8k.mp3").read_bytes()
    broken = whole[:2880] + b"\xff" * 40 + whole[2920:]  # two 288-byte frames' data overwritten

    found = inspected(broken)

    assert 3.1 < found.seconds < inspected(whole).seconds


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (lying_wav(), "1 Hz"),  # its header: 4,294,967,280 s
        (lying_flac(), "1 Hz"),  # its header: 4,294,967,280 s
        (broken_wavpack(), "not audio"),
        (broken_mp4(), "not audio"),
        (lying_mp3(), "only 0.05 s of audio"),  # its Xing header: 112,195,064 s
        (HALF_SECOND.read_bytes(), "only 0.50 s of audio"),
        (RECORDED.data[:1000], "only 0.26 s of audio"),  # the first 1,000 bytes of a 7 s MP3
        (HTML_PAGE.read_bytes(), "not audio"),
        (b"", "not audio"),
        (bytes(range(256)) * 64, "not audio"),
        (wav_at(4000, 3), "4000 Hz"),  # 3 s of 8 kHz samples, said to be 4 kHz: 6 s
        (flac_of_long_blocks(10), "991 bytes cannot hold 598 s"),
    ],
    ids=[
        "wav-claiming-4294967280-s",
        "flac-claiming-4294967280-s",
        "wavpack-with-no-rate",
        "mp4-of-endless-size",
        "mp3-with-a-lying-xing-header",
        "half-a-second",
        "a-1000-byte-fragment",
        "html",
        "empty",
        "arbitrary-bytes",
        "wav-at-4-khz",
        "flac-of-minutes-in-a-kilobyte",
    ],
)
def test_what_is_not_a_recording_is_invalid_audio_with_the_reason(data, reason):
    with pytest.raises(InvalidAudio, match=reason):
        inspected(data)
