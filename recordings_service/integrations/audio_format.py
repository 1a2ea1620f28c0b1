"""Telling audio from anything else: a recording's bytes decoded by FFmpeg (PyAV), its length the audio
it holds (decoded samples), never what a header claims.

Accepted: MP3 (MPEG 1, 2 and 2.5, with or without ID3), WAV (PCM, u-law, a-law, GSM, ADPCM), Ogg (Opus,
Vorbis, Speex), WebM (Opus), FLAC, M4A and ADTS (AAC) and AMR; sampled at 8 kHz or more, a second or longer.
"""

import os
from dataclasses import dataclass
from typing import BinaryIO

import av

from ..exceptions import InvalidAudio

# The FFmpeg demuxers tried, by their names, and the type and extension their audio is served with.
_FORMATS = {
    "mp3": ("audio/mpeg", ".mp3"),
    "wav": ("audio/wav", ".wav"),
    "ogg": ("audio/ogg", ".ogg"),
    "matroska": ("audio/webm", ".webm"),
    "flac": ("audio/flac", ".flac"),
    "mov": ("audio/mp4", ".m4a"),
    "aac": ("audio/aac", ".aac"),
    "amr": ("audio/amr", ".amr"),
}
_OPTIONS = {"format_whitelist": ",".join(_FORMATS)}

MIN_SECONDS = 1.0
# Far below any codec's rate, silence in FLAC included: fewer bits a second, and blocks or a header lied.
MIN_BITS_PER_SECOND = 500
MIN_SAMPLE_RATE = 8_000
# The duration column is a 32-bit integer.
MAX_SECONDS = 2**31 - 1
# What stored audio is served as.
CONTENT_TYPES = list(dict.fromkeys(content_type for content_type, _ in _FORMATS.values()))


@dataclass(frozen=True)
class AudioInfo:
    seconds: float
    content_type: str
    extension: str


def inspect(file: BinaryIO) -> AudioInfo:
    """Return what the audio in ``file`` is and how long it lasts; raise ``InvalidAudio`` otherwise."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    try:
        decoded = _decode(file)
    except av.FFmpegError as error:
        raise InvalidAudio(f"not audio: {error.strerror}") from error
    except Exception as error:  # a parser of hostile bytes may fail in any way: still not audio
        raise InvalidAudio(f"not audio: {type(error).__name__}: {error}") from error
    if decoded is None:
        raise InvalidAudio("not audio: no audio stream")
    format_name, codec, sample_rate, seconds = decoded
    if sample_rate < MIN_SAMPLE_RATE:
        raise InvalidAudio(f"not audio: {codec} at {sample_rate} Hz, under {MIN_SAMPLE_RATE} Hz")
    if seconds * MIN_BITS_PER_SECOND > size * 8 or seconds > MAX_SECONDS:
        raise InvalidAudio(f"not audio: {size} bytes cannot hold {seconds:.0f} s of {codec}")
    if seconds < MIN_SECONDS:
        raise InvalidAudio(f"only {seconds:.2f} s of audio: a recording has at least {MIN_SECONDS:.0f} s")
    content_type, extension = _FORMATS[format_name]
    if format_name == "ogg" and codec == "opus":
        extension = ".opus"
    return AudioInfo(seconds, content_type, extension)


def _decode(file: BinaryIO) -> tuple[str, str, int, float] | None:
    """Decode the first audio stream and return its demuxer, codec, sample rate and decoded seconds.

    Return None when there is no audio stream.
    """
    with av.open(file, "r", container_options=_OPTIONS) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        seconds = 0.0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                continue  # one broken frame (damage in transit or on disk) leaves the rest of the call
            seconds += sum(frame.samples / frame.sample_rate for frame in frames)
        format_name = next(name for name in container.format.name.split(",") if name in _FORMATS)
        return format_name, stream.codec_context.name, stream.sample_rate or 0, seconds
