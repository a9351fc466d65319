"""Audio files that users give us (``talkface chat --audio question.wav``).

Any format FFmpeg reads (WAV, MP3, OGG/Opus, FLAC, M4A, WebM, ...) is decoded with PyAV,
mixed down to mono and resampled to 16 kHz. Files that cannot be used are refused with a
one-line message that says what to do. A file whose header says it is too long is
refused before anything is decoded (a WAV header is read by talkface itself, since FFmpeg
quietly trusts the file's size over a header that claims more); one whose header does not
say (or lies) is refused as soon as the decoded audio passes the limit, so a long file
never sits in memory whole.

Silence and noise are valid audio: they load, and the pipeline later says that it heard
no speech.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkface.audio import resample
from talkface.errors import BackendUnavailable, BadInput, PayloadTooLarge
from talkface.messages import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

TARGET_RATE_HZ = 16_000
MAX_SPOKEN_TURN_S = 120.0
"""Default longest recording accepted as one spoken turn."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""Files larger than this are refused before opening (no spoken turn is this big)."""
_FORMAT_HINT = "convert it to WAV, MP3, OGG or FLAC"
_WAV_HEADER_BYTES = 64 * 1024
"""How much of a WAV file is searched for its ``fmt `` and ``data`` chunks."""
_WAV_UNKNOWN_SIZES = (0, 0xFFFF_FFFF)
"""``data`` sizes that mean "not known": written by recorders that stream and never go back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFileInfo:
    """What was in the file.

    Attributes:
        path: the file.
        container: FFmpeg's name of the container ("wav", "mp3", "ogg").
        codec: FFmpeg's name of the audio codec ("pcm_s16le", "mp3", "opus").
        source_rate_hz: the file's sample rate.
        channels: the file's channel count (the result is always mono).
        duration_s: duration of the decoded audio.
    """

    path: Path
    container: str
    codec: str
    source_rate_hz: int
    channels: int
    duration_s: float


def load_audio_file(
    path: str | os.PathLike[str], *, max_duration_s: float = MAX_SPOKEN_TURN_S
) -> tuple[np.ndarray, AudioFileInfo]:
    """Decode an audio file to 16 kHz mono float32.

    Args:
        path: the file.
        max_duration_s: longest audio accepted.

    Returns:
        The samples in [-1, 1] and a description of the file.

    Raises:
        BadInput: the file is missing, empty, not audio, damaged, or has an unusable
            sample rate.
        PayloadTooLarge: the audio (or the file) is longer than allowed.
        BackendUnavailable: PyAV is not installed.
    """
    file = Path(path).expanduser()
    _check_file(file, max_duration_s)
    _check_wav_header(file, max_duration_s)
    try:
        import av
    except ImportError as exc:
        raise BackendUnavailable(
            "reading audio files needs PyAV; run: pip install 'talkface[output]'"
        ) from exc
    try:
        container = av.open(str(file), mode="r")
    except av.error.FFmpegError as exc:
        raise BadInput(
            f"{file} is not an audio file FFmpeg can read ({_reason(exc)}); {_FORMAT_HINT}"
        ) from None
    with container:
        if not container.streams.audio:
            raise BadInput(f"{file} has no audio track; {_FORMAT_HINT}")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # FFmpeg has no decoder for what the header names
            raise BadInput(f"{file} uses an audio encoding FFmpeg cannot decode; {_FORMAT_HINT}")
        rate_hz = int(stream.rate or stream.codec_context.sample_rate or 0)
        _check_rate(file, rate_hz)
        _check_declared_duration(file, container, stream, max_duration_s)
        mono = _decode_mono(file, container, stream, rate_hz, max_duration_s)
        info_codec = stream.codec_context.name
        info_container = container.format.name
        channels = int(stream.channels or 0)
    if mono.size == 0:
        raise BadInput(f"{file} contains no audio samples; record the question again")
    audio = resample(mono, rate_hz, TARGET_RATE_HZ).astype(np.float32, copy=False)
    np.clip(audio, -1.0, 1.0, out=audio)
    info = AudioFileInfo(
        path=file,
        container=info_container,
        codec=info_codec,
        source_rate_hz=rate_hz,
        channels=channels,
        duration_s=mono.size / rate_hz,
    )
    return audio, info


def _check_file(file: Path, max_duration_s: float) -> None:
    if max_duration_s <= 0:
        raise ValueError("max_duration_s must be positive")
    if not file.exists():
        raise BadInput(f"audio file {file} does not exist; check the path")
    if not file.is_file():
        raise BadInput(f"{file} is not a file; give the path of an audio file")
    size = file.stat().st_size
    if size == 0:
        raise BadInput(f"audio file {file} is empty (0 bytes); record the question again")
    if size > MAX_FILE_BYTES:
        raise PayloadTooLarge(
            f"audio file {file} is {size / 2**20:.0f} MiB, more than any spoken question "
            f"({MAX_FILE_BYTES // 2**20} MiB); send a recording under "
            f"{max_duration_s:g} s"
        )


def _check_wav_header(file: Path, max_duration_s: float) -> None:
    """Refuse a WAV file whose own header declares more audio than allowed.

    Only the first :data:`_WAV_HEADER_BYTES` are read. A header that declares more audio
    than the file holds is damaged (or made to mislead): it is refused as such.
    """
    with file.open("rb") as source:
        head = source.read(_WAV_HEADER_BYTES)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return  # not WAV (or RF64, whose sizes live elsewhere): FFmpeg's checks apply
    byte_rate = None
    position = 12
    while position + 8 <= len(head):
        kind = head[position : position + 4]
        (size,) = struct.unpack_from("<I", head, position + 4)
        body = position + 8
        if kind == b"fmt " and size >= 16 and body + 16 <= len(head):
            rate_hz, byte_rate = struct.unpack_from("<II", head, body + 4)
            if not MIN_SAMPLE_RATE_HZ <= rate_hz <= MAX_SAMPLE_RATE_HZ:
                return  # a damaged header: refused once FFmpeg has read it, as such
        elif kind == b"data":
            if byte_rate and size not in _WAV_UNKNOWN_SIZES:
                _check_declared_wav_data(file, size, body, byte_rate, max_duration_s)
            return
        position = body + size + (size & 1)  # chunks are padded to an even size


def _check_declared_wav_data(file: Path, size: int, offset: int, byte_rate: int,
                             max_duration_s: float) -> None:
    declared_s = size / byte_rate
    if declared_s <= max_duration_s + 0.5:
        return
    held = file.stat().st_size - offset
    if held < size:
        raise BadInput(
            f"the WAV header of {file} says it holds {declared_s:.0f} s of audio, but the "
            f"file has only {max(held, 0) / byte_rate:.1f} s: the header is damaged or the "
            "file was cut short; export the recording again"
        )
    raise _too_long(file, declared_s, max_duration_s)


def _check_rate(file: Path, rate_hz: int) -> None:
    if not MIN_SAMPLE_RATE_HZ <= rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise BadInput(
            f"{file} says its sample rate is {rate_hz} Hz, outside "
            f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz; the file is probably damaged, "
            "re-export it at 16 or 48 kHz"
        )


def _too_long(file: Path, duration_s: float, max_duration_s: float) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{file} is {duration_s:.0f} s long; a spoken question may be at most "
        f"{max_duration_s:g} s: trim it (ffmpeg -i IN -t {max_duration_s:g} OUT.wav)"
    )


def _check_declared_duration(
    file: Path, container: Any, stream: Any, max_duration_s: float
) -> None:
    declared_s = None
    if stream.duration is not None and stream.time_base is not None:
        declared_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared_s = container.duration / 1_000_000  # AV_TIME_BASE
    if declared_s is not None and declared_s > max_duration_s + 0.5:
        raise _too_long(file, declared_s, max_duration_s)


def _decode_mono(
    file: Path, container: Any, stream: Any, rate_hz: int, max_duration_s: float
) -> np.ndarray:
    import av

    limit = int(max_duration_s * rate_hz) + 1
    pieces: list[np.ndarray] = []
    total = 0
    converter: Any = None
    try:
        for frame in container.decode(stream):
            if frame.sample_rate != rate_hz:
                raise BadInput(
                    f"{file} changes its sample rate midway ({rate_hz} -> "
                    f"{frame.sample_rate} Hz); {_FORMAT_HINT}"
                )
            if converter is None:
                # Only the sample format changes here (to planar float); the rate
                # conversion is talkface.audio.resample's, after the downmix.
                converter = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate_hz)
            for converted in converter.resample(frame):
                planes = converted.to_ndarray()  # (channels, samples)
                mono = planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0]
                pieces.append(np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0))
                total += mono.size
            if total > limit:
                raise _too_long(file, total / rate_hz, max_duration_s)
    except av.error.FFmpegError as exc:
        raise BadInput(f"{file} is damaged ({_reason(exc)}); {_FORMAT_HINT}") from None
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)


def _reason(exc: Exception) -> str:
    strerror = getattr(exc, "strerror", None)
    return str(strerror or exc).strip().rstrip(".")
