"""Speech for the HTTP API: picking a voice by name, speaking a text, encoding the audio.

OpenAI clients name voices ``alloy``, ``echo``...; those map to talkface's default voice
for the language of the text, and talkface's own voice names (``talkface voices``) work
as they are. Audio is encoded with PyAV (FFmpeg) in a worker thread, at 24 kHz mono as
OpenAI's speech endpoint returns it.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Literal

import numpy as np

from talkface.audio import pcm16_to_float32, resample
from talkface.errors import BackendUnavailable, BadInput
from talkface.messages import SpeechAudio
from talkface.runtime import Runtime
from talkface.text.normalize import normalize_text
from talkface.text.policy import SpeechText, choose_voice
from talkface.tts.base import SynthesisRequest, VoiceInfo

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx",
    "sage", "shimmer", "verse",
)
"""OpenAI's voice names; each speaks with talkface's default voice for the language."""

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_RATE_HZ = 24_000
"""Sample rate of every encoded speech response (OpenAI's ``pcm`` is 24 kHz s16le)."""
_SENTENCES_IN_FLIGHT = 4  # lets the TTS engine batch a long text without hogging its queue

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@dataclass(frozen=True, slots=True)
class _Encoding:
    container: str
    codec: str
    bit_rate: int | None = None


_ENCODINGS: dict[str, _Encoding] = {
    "mp3": _Encoding("mp3", "libmp3lame", 64_000),
    "opus": _Encoding("ogg", "libopus", 32_000),
    "aac": _Encoding("adts", "aac", 64_000),
    "flac": _Encoding("flac", "flac"),
    "wav": _Encoding("wav", "pcm_s16le"),
}
_CHUNK_SAMPLES = 8192


def api_voice_name(name: str | None) -> str | None:
    """talkface's name for a voice a client asked for: OpenAI names mean "the default"."""
    return None if name is None or name.lower() in OPENAI_VOICES else name


def resolve_api_voice(runtime: Runtime, name: str | None, language: str) -> VoiceInfo:
    """The voice for ``name``: an OpenAI voice name or None means the language's default.

    Raises:
        BadInput: no such voice, or it cannot speak ``language``; the message lists voices.
    """
    return choose_voice(runtime.resolve_voice, api_voice_name(name), language)


async def synthesize_text(
    runtime: Runtime, text: SpeechText, voice: VoiceInfo, *, speed: float = 1.0
) -> tuple[np.ndarray, int]:
    """Speak ``text`` (checked by :func:`talkface.text.policy.speech_text`) sentence by
    sentence through the shared TTS engine; emotion tags are not spoken.

    Returns:
        Float32 mono samples and their sample rate.

    Raises:
        BadInput: nothing speakable in the text.
        Overloaded, BackendError: from the engine.
    """
    engine = await runtime.tts_engine(voice)
    pieces = [normalize_text(p, text.language) for p, _ in text.sentences()]
    pieces = [p for p in pieces if p.strip() and any(ch.isalnum() for ch in p)]
    if not pieces:
        raise BadInput("nothing to say: the input has no words in it")
    slots = asyncio.Semaphore(_SENTENCES_IN_FLIGHT)

    async def speak(index: int, piece: str) -> SpeechAudio:
        async with slots:
            return await engine.submit(SynthesisRequest(
                text=piece, voice=voice, sentence_index=index, speed=speed,
            ))

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(speak(i, p)) for i, p in enumerate(pieces)]
    speeches = [t.result() for t in tasks]
    rate_hz = speeches[0].sample_rate_hz
    samples = np.concatenate([
        resample(pcm16_to_float32(s.pcm), s.sample_rate_hz, rate_hz) for s in speeches
    ]).astype(np.float32, copy=False)
    return samples, rate_hz


def encode_audio(samples: np.ndarray, rate_hz: int, fmt: AudioFormat) -> bytes:
    """Encode mono float32 ``samples`` as ``fmt`` at :data:`SPEECH_RATE_HZ` (blocking).

    Raises:
        BackendUnavailable: PyAV or the format's encoder is missing.
    """
    audio = np.clip(resample(samples, rate_hz, SPEECH_RATE_HZ), -1.0, 1.0)
    pcm = np.rint(audio * 32767.0).astype("<i2")
    if fmt == "pcm":
        return pcm.tobytes()
    try:
        import av
    except ImportError as exc:
        raise BackendUnavailable("encoding audio needs PyAV; run: pip install av") from exc
    encoding = _ENCODINGS[fmt]
    buffer = io.BytesIO()
    try:
        container = av.open(buffer, mode="w", format=encoding.container)
        stream = container.add_stream(encoding.codec, rate=SPEECH_RATE_HZ, layout="mono")
    except (av.error.FFmpegError, ValueError) as exc:
        raise BackendUnavailable(
            f"this server's FFmpeg cannot write {fmt} ({exc}); ask for wav or pcm instead"
        ) from None
    with container:
        if encoding.bit_rate:
            stream.bit_rate = encoding.bit_rate
        # PyAV converts each frame to the encoder's sample format and frame size.
        for start in range(0, len(pcm), _CHUNK_SAMPLES):
            chunk = pcm[start : start + _CHUNK_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SPEECH_RATE_HZ
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
