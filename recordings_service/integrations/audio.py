"""Telling audio from anything else: a recording's bytes parsed with mutagen, which reads the container
and frames of MP3, WAV, Ogg and the other formats AT and its peers produce.

A parse is not a byte count: mutagen still finds a length in an MP3 cut short, so a cut download is
caught by comparing the bytes received with Content-Length (integrations/egress.py), not here.
"""

from dataclasses import dataclass
from typing import BinaryIO

import mutagen

# The type the audio is served with, by what mutagen found (its own first MIME guess is often odd).
_TYPES = {
    "MP3": ("audio/mpeg", ".mp3"),
    "WAVE": ("audio/wav", ".wav"),
    "OggVorbis": ("audio/ogg", ".ogg"),
    "OggOpus": ("audio/ogg", ".opus"),
    "FLAC": ("audio/flac", ".flac"),
    "MP4": ("audio/mp4", ".m4a"),
    "AAC": ("audio/aac", ".aac"),
}
# What stored audio is served as: these, or the type mutagen names for a format not among them.
CONTENT_TYPES = list(dict.fromkeys(content_type for content_type, _ in _TYPES.values()))


class InvalidAudio(Exception):
    """The bytes are not audio with a length."""


@dataclass(frozen=True)
class AudioInfo:
    seconds: float
    content_type: str
    extension: str


def inspect(file: BinaryIO) -> AudioInfo:
    """Return what the audio in ``file`` is and how long it lasts; raise ``InvalidAudio`` otherwise."""
    file.seek(0)
    try:
        parsed = mutagen.File(file)
    except mutagen.MutagenError as error:
        raise InvalidAudio(f"not audio: {error}") from error
    if parsed is None:  # no format recognised it (an HTML error page, say)
        raise InvalidAudio("not audio: no audio format recognised")
    seconds = getattr(parsed.info, "length", 0) or 0
    if seconds <= 0:
        raise InvalidAudio(f"not audio: a {type(parsed).__name__} file with no length")
    content_type, extension = _TYPES.get(type(parsed).__name__, (parsed.mime[0], ""))
    return AudioInfo(seconds, content_type, extension)
