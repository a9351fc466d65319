"""espeak-ng TTS: Mandarin Chinese and every other language espeak-ng knows.

Debian's espeak-ng 1.51 reads Chinese characters with its ``cmn`` voice but speaks the
tone numbers of its own romanisation aloud; its ``cmn-latn-pinyin`` voice reads pinyin
with tone numbers correctly. So Chinese text is turned into numbered pinyin (pypinyin)
first. Mixed Chinese/English text is cut into runs of one script and each run is spoken
by the matching voice, because an SSML voice switch back to ``cmn-latn-pinyin`` falls
back to plain ``cmn`` in 1.51.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Self

import numpy as np

from talkface.audio import float32_to_pcm16, pcm16_to_float32, resample
from talkface.errors import BackendError, BackendUnavailable, BadInput
from talkface.messages import SpeechAudio
from talkface.text.language import script_runs
from talkface.tts.base import (
    SynthesisRequest,
    TTSBackend,
    TTSCapabilities,
    TTSSettings,
    VoiceInfo,
)

ESPEAK_RATE_WPM = 170
OUTPUT_RATE_HZ = 22_050
_TRAILING_SILENCE_KEEP_S = 0.08
_SUBPROCESS_TIMEOUT_S = 20.0

# Voices that `talkface voices` always lists; any other espeak-ng language works as
# "espeak-<code>" (see `espeak-ng --voices`).
_LISTED_VOICES = (
    ("espeak-zh", "zh", "cmn-latn-pinyin", "Mandarin Chinese, male, espeak-ng (pinyin voice)"),
    ("espeak-en", "en", "en-us", "English (US), male, espeak-ng"),
)
ESPEAK_LICENSE = "GPL-3.0-or-later (espeak-ng and its voice data)"
_CHINESE_PUNCTUATION = str.maketrans("，。！？；：、（）“”‘’《》", ",.!?;:,()\"\"''\"\"")


def espeak_binary() -> str | None:
    """Path of the espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def voice_for_language(code: str) -> VoiceInfo:
    """The espeak voice for an arbitrary language code ("de", "fr", "zh")."""
    for name, language, espeak_voice, description in _LISTED_VOICES:
        if language == code:
            return VoiceInfo(
                name=name,
                backend="espeak",
                language=language,
                model_id=espeak_voice,
                description=description,
                license=ESPEAK_LICENSE,
            )
    return VoiceInfo(
        name=f"espeak-{code}",
        backend="espeak",
        language=code,
        model_id=code,
        description=f"espeak-ng voice for {code!r}",
        license=ESPEAK_LICENSE,
    )


def to_numbered_pinyin(text: str) -> str:
    """Chinese characters to pinyin with tone numbers, neutral tone as 5."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(s.strip() for s in syllables if s.strip()).translate(_CHINESE_PUNCTUATION)


def _wav_to_float32(wav: bytes) -> tuple[np.ndarray, int]:
    """Parse espeak-ng's streamed WAV (its size fields may be placeholders)."""
    if len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise BackendError("espeak-ng did not return WAV audio", retryable=False)
    position = 12
    sample_rate_hz = OUTPUT_RATE_HZ
    while position + 8 <= len(wav):
        chunk_id = wav[position : position + 4]
        size = int.from_bytes(wav[position + 4 : position + 8], "little")
        body = position + 8
        if chunk_id == b"fmt ":
            sample_rate_hz = int.from_bytes(wav[body + 4 : body + 8], "little")
        elif chunk_id == b"data":
            data = wav[body:]
            return pcm16_to_float32(data[: len(data) // 2 * 2]), sample_rate_hz
        position = body + size
    raise BackendError("espeak-ng returned WAV without audio data", retryable=False)


def _trim_trailing_silence(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if loud.size == 0:
        return audio[:0]
    end = min(len(audio), loud[-1] + int(_TRAILING_SILENCE_KEEP_S * sample_rate_hz))
    return audio[:end]


class EspeakTTS(TTSBackend):
    """espeak-ng through its command-line program; one backend speaks every voice."""

    name = "espeak"
    capabilities = TTSCapabilities(
        phoneme_timings=False, batching=False, one_model_per_voice=False
    )

    def __init__(self, settings: TTSSettings, voice: VoiceInfo, binary: str) -> None:
        super().__init__(settings, voice)
        self._binary = binary
        self.sample_rate_hz = OUTPUT_RATE_HZ

    @classmethod
    def list_voices(cls) -> list[VoiceInfo]:
        """The espeak-ng voices talkface offers; none when espeak-ng is not installed."""
        if espeak_binary() is None:
            return []
        return [voice_for_language(language) for _, language, _, _ in _LISTED_VOICES]

    @classmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
        """Find espeak-ng for ``voice`` and load pypinyin's dictionaries (~0.2 s) now, not
        mid-reply."""
        binary = espeak_binary()
        if binary is None:
            raise BackendUnavailable(
                "espeak-ng is not installed; run: sudo apt-get install espeak-ng "
                "(make setup does this)"
            )
        backend = cls(settings, voice, binary)
        # pypinyin loads its dictionaries on first use (~0.2 s): pay that now, not mid-reply.
        to_numbered_pinyin("你好")
        return backend

    def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        return [self._synthesize_one(request) for request in requests]

    def _synthesize_one(self, request: SynthesisRequest) -> SpeechAudio:
        pieces = []
        for script, run in script_runs(request.text):
            if script == "zh":
                audio = self._run_espeak("cmn-latn-pinyin", to_numbered_pinyin(run), request)
            elif script == "latin" and request.voice.language == "zh":
                audio = self._run_espeak("en-us", run, request)
            else:
                audio = self._run_espeak(request.voice.model_id, run, request)
            pieces.append(_trim_trailing_silence(audio, OUTPUT_RATE_HZ))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if audio.size == 0:
            raise BadInput("espeak-ng found nothing to speak in that sentence")
        return SpeechAudio(
            pcm=float32_to_pcm16(audio),
            sample_rate_hz=OUTPUT_RATE_HZ,
            sentence_index=request.sentence_index,
            text=request.text,
            emotion=request.emotion,
        )

    def _run_espeak(self, espeak_voice: str, text: str, request: SynthesisRequest) -> np.ndarray:
        rate_wpm = int(ESPEAK_RATE_WPM * request.speed * self.settings.speed)
        return run_espeak(self._binary, espeak_voice, text, rate_wpm)


def run_espeak(binary: str, espeak_voice: str, text: str, rate_wpm: int) -> np.ndarray:
    """Speak ``text`` with one espeak-ng voice; float32 samples at :data:`OUTPUT_RATE_HZ`.

    Text without a letter or digit gives no samples (espeak-ng would say nothing useful).

    Raises:
        BackendError: espeak-ng failed or did not finish in time.
    """
    if not re.search(r"\w", text):
        return np.zeros(0, np.float32)
    try:
        # Text goes through stdin so that no user text is ever read as an option.
        completed = subprocess.run(
            [binary, "-v", espeak_voice, "-s", str(rate_wpm), "-b", "1", "--stdout"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackendError("espeak-ng did not finish in time", retryable=True) from None
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()[:200]
        raise BackendError(
            f"espeak-ng failed for voice {espeak_voice!r}: {detail}", retryable=False
        )
    audio, rate_hz = _wav_to_float32(completed.stdout)
    return resample(audio, rate_hz, OUTPUT_RATE_HZ)
