"""Audio the tests serve: the recordings in tests/fixtures/audio (as telephony systems write them), and
files built byte by byte that claim a length they do not hold."""

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from recordings_service.devtools.simulation import PHONE_CALL, RECORDED_CALL

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"


@dataclass(frozen=True)
class AudioFile:
    """A recording a test serves, and what the service is to find in it."""

    path: Path
    duration: int  # whole seconds
    content_type: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _fixture(name: str, content_type: str, duration: int = 3) -> AudioFile:
    return AudioFile(FIXTURES / name, duration, content_type)


RECORDED = AudioFile(RECORDED_CALL, 7, "audio/mpeg")  # 7.29 s, 22,050 Hz MPEG-1
PHONE = AudioFile(PHONE_CALL, 30, "audio/mpeg")  # 30.3 s, 8 kHz MPEG-2.5, untagged
MP3_8K = _fixture("mp3-8k.mp3", "audio/mpeg")
WAV_8K = _fixture("wav-8k-pcm.wav", "audio/wav")
# What the fetch, storage and simulate-call tests run with: the 22 kHz call and telephone audio.
EVERYDAY = [RECORDED, MP3_8K, WAV_8K]
# Every kind of recording the service is to accept.
ACCEPTED = [
    RECORDED,
    PHONE,
    MP3_8K,
    _fixture("mp3-11k.mp3", "audio/mpeg"),
    _fixture("mp3-16k.mp3", "audio/mpeg"),
    _fixture("mp3-44k.mp3", "audio/mpeg"),
    _fixture("mp3-8k-tagged.mp3", "audio/mpeg"),
    WAV_8K,
    _fixture("wav-8k-ulaw.wav", "audio/wav"),
    _fixture("wav-8k-alaw.wav", "audio/wav"),
]
HALF_SECOND = FIXTURES / "wav-8k-half-second.wav"
HTML_PAGE = FIXTURES / "page.html"


def lying_wav() -> bytes:
    """A 60-byte WAV whose header says 4,294,967,280 s: a data chunk of 0xFFFFFFF0 bytes at 1 byte/s."""
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 1, 1, 8)  # PCM, mono, 1 Hz, 1 byte/s, 8-bit
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFF0)
    return b"RIFF" + struct.pack("<I", len(body) + 16) + body + bytes(16)


def lying_flac() -> bytes:
    """A 76-byte FLAC whose STREAMINFO says 4,294,967,280 samples at 1 Hz, and no frames."""
    rate, channels_less_one, bits_less_one, samples = 1, 0, 15, 0xFFFFFFF0
    packed = (rate << 44) | (channels_less_one << 41) | (bits_less_one << 36) | samples
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    head = b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info
    return head + bytes(76 - len(head))


def broken_wavpack() -> bytes:
    """A 35-byte WavPack block whose sample-rate index (15) names no rate."""
    flags = 0xF << 23
    header = b"wvpk" + struct.pack("<IHBBIIII", 24, 0x410, 0, 0, 1000, 0, 1000, flags)
    return header + bytes(4) + bytes(3)  # its CRC, then 3 bytes of the block


def broken_mp4() -> bytes:
    """A 16-byte MP4: one ``ftyp`` box whose 64-bit size is 2^64 - 1."""
    return struct.pack(">I", 1) + b"ftyp" + struct.pack(">Q", 0xFFFFFFFFFFFFFFFF)


def lying_mp3() -> bytes:
    """A 1,251-byte MP3 of three 44.1 kHz frames, the first a Xing header counting 4,294,967,295 frames."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC0])  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: 417 bytes
    first = header + bytes(17) + b"Xing" + struct.pack(">II", 1, 0xFFFFFFFF)
    return first + bytes(417 - len(first)) + (header + bytes(413)) * 2


def amr() -> bytes:
    """AMR-NB (as mobile recorders write it): 1.5 s of 12.2 kbit/s frames of arbitrary bits."""
    frame = bytes([0x3C]) + bytes(range(1, 32))  # mode 7 (12.2 kbit/s): a 1-byte header and 31 bytes
    return b"#!AMR\n" + frame * 75  # 20 ms a frame


def wav_at(rate: int, seconds: float) -> bytes:
    """8-bit PCM WAV whose header says ``rate`` Hz, with ``seconds`` of 8 kHz samples in it."""
    data = bytes([128, 160, 128, 96]) * int(8000 * seconds / 4)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _crc(data: bytes, poly: int, bits: int) -> int:
    crc, top, mask = 0, 1 << (bits - 1), (1 << bits) - 1
    for byte in data:
        crc ^= byte << (bits - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def flac_of_long_blocks(minutes: int = 10) -> bytes:
    """FLAC at 8 kHz whose frames are each 65,535 samples of one constant value: 11 bytes every 8.2 s."""
    blocks = minutes * 60 * 8000 // 65535
    rate, channels_less_one, bits_less_one = 8000, 0, 15
    packed = (rate << 44) | (channels_less_one << 41) | (bits_less_one << 36) | blocks * 65535
    info = struct.pack(">HH", 65535, 65535) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    out = b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info
    for number in range(blocks):
        assert number < 0x80  # the frame number's UTF-8-like coding, in one byte
        # Sync, fixed block size; a 16-bit block size at the end, 8 kHz; mono, 16-bit; the frame's number.
        header = bytes([0xFF, 0xF8, 0x74, 0x08, number]) + struct.pack(">H", 65534)
        header += bytes([_crc(header, 0x07, 8)])
        frame = header + bytes([0x00]) + struct.pack(">h", 0)  # one CONSTANT subframe: the value 0
        out += frame + struct.pack(">H", _crc(frame, 0x8005, 16))
    return out
