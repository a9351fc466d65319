"""ASR final-pass cost and accuracy on this box: 30 s window vs the cut window.

Run: ``.venv/bin/python bench/asr_bench.py [--quick]``. Prints tables, asserts nothing.

What it measures, 1 CPU thread per model, speech generated with the project's own TTS
(piper "joe" and espeak-ng), 0.2 s of silence either side as the VAD leaves it:

1. Final-pass time per utterance length (about 1, 3, 6 and 10 s) for ``base`` and
   ``tiny.en``, with
   * ``fw-defaults``: ``WhisperModel.transcribe`` with faster-whisper's default options
     (beam 5, temperature fallback), the naive way;
   * ``30s-window``: talkface's guarded decoder with the usual 30 s Whisper window;
   * ``cut-window``: talkface's decoder as shipped (window = audio + 2 s, at least 10 s);
   * ``after-end``: what is left after the VAD's end event when the final pass starts
     at the pause, 300 ms earlier (``min_silence_ms - speech_pad_ms``).
2. Accuracy: word error rate on 28 English clips (14 sentences x 2 voices) and character
   error rate on 8 Mandarin clips (espeak-ng, 2 speeds; ``base`` only) for both windows.
3. The silero VAD's time per 32 ms window.

The machine is shared: numbers are medians of a few runs and move with the load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from talkface.asr import _decoding as dec
from talkface.asr.base import ASRRequest, ASRSettings
from talkface.asr.faster_whisper import FasterWhisperASR
from talkface.audio import pcm16_to_float32, resample
from talkface.bench.accuracy import han_error_rate, word_error_rate
from talkface.tts.base import SynthesisRequest, TTSSettings
from talkface.tts.espeak import EspeakTTS, voice_for_language
from talkface.tts.piper import PiperTTS
from talkface.tts.voices import resolve_voice

LENGTH_TEXTS = {
    "1s": "Hello there.",
    "3s": "Can you tell me the weather forecast for tomorrow?",
    "6s": "I would like to book a table for four people at an Italian restaurant near the "
    "train station tonight, please.",
    "10s": "Yesterday I visited the museum with my sister, and we spent almost three hours "
    "looking at old paintings, ancient coins, and a huge dinosaur skeleton in the main hall.",
}
ENGLISH = [
    "Hello.",
    "Thank you.",
    "What time is it?",
    "Stop.",
    "How are you today?",
    "Where is the nearest pharmacy?",
    "Can you tell me the weather forecast for tomorrow?",
    "Please remind me to call my mother at six o'clock this evening.",
    "What is the difference between a crocodile and an alligator?",
    "I would like to book a table for four people at an Italian restaurant near the "
    "train station tonight.",
    "My flight was cancelled this morning, so I need to find another way to get to "
    "Berlin before Friday afternoon.",
    "Yesterday I visited the museum with my sister, and we spent almost three hours "
    "looking at old paintings, ancient coins, and a huge dinosaur skeleton in the main hall.",
    "Could you explain how a refrigerator keeps food cold, and why it makes a humming "
    "noise at night?",
    "Turn off the lights in the kitchen.",
]
CHINESE = [
    "今天天气很好，我们一起去公园散步吧。",
    "你好，请问现在几点了？",
    "我想订一张明天去北京的火车票。",
    "这个问题我不太明白，你能再说一遍吗？",
]
SPECULATIVE_LEAD_S = 0.3
wer = word_error_rate
cer = han_error_rate


def to_16k(speech) -> np.ndarray:  # type: ignore[no-untyped-def]
    audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, 16_000)
    pad = np.zeros(3_200, dtype=np.float32)
    return np.concatenate([pad, audio.astype(np.float32), pad])


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


class Window:
    """Forces the decoder's window to 30 s (Whisper's usual) inside a ``with`` block."""

    def __init__(self, full: bool) -> None:
        self.full = full

    def __enter__(self) -> None:
        self._saved = dec.MIN_WINDOW_S
        if self.full:
            dec.MIN_WINDOW_S = dec.MAX_WINDOW_S

    def __exit__(self, *exc: object) -> None:
        dec.MIN_WINDOW_S = self._saved


def fw_defaults(asr: FasterWhisperASR, audio: np.ndarray) -> str:
    model = asr._model  # the bench looks inside on purpose
    language = "en" if asr.files.multilingual else None
    segments, _ = model.transcribe(audio, language=language)
    return " ".join(s.text.strip() for s in segments)


def bench_lengths(
    asr: FasterWhisperASR, lengths: dict[str, np.ndarray], repeats: int, *, naive: bool
) -> None:
    model = asr.settings.model
    for name, audio in lengths.items():
        request = ASRRequest(audio=audio)
        naive_text = "-"
        if naive:
            naive_s, _ = timed(lambda a=audio: fw_defaults(asr, a), 1)
            naive_text = f"{naive_s:.2f}"
        with Window(full=True):
            full_s, _ = timed(lambda r=request: asr.transcribe(r), max(1, repeats - 1))
        cut_s, result = timed(lambda r=request: asr.transcribe(r), repeats)
        after = max(0.0, cut_s - SPECULATIVE_LEAD_S)
        label = f"{name} ({len(audio) / 16_000:.1f}s)"
        text = result.text[:60]  # type: ignore[attr-defined]
        print(
            f"{model:8} {label:>10} {naive_text:>12} {full_s:>11.2f} {cut_s:>11.2f} "
            f"{after:>10.2f}  {text}",
            flush=True,
        )


def bench_accuracy(
    asr: FasterWhisperASR,
    english: list[tuple[str, np.ndarray]],
    chinese: list[tuple[str, np.ndarray]],
) -> list[tuple[str, str, str, float, float]]:
    rows = []
    for full in (True, False):
        window = "30s" if full else "cut"
        for metric, clips, language, score in (
            ("en WER", english, None, wer),
            ("zh CER", chinese, "zh", cer),
        ):
            if not clips:
                continue
            errors, times = [], []
            with Window(full=full):
                for ref, audio in clips:
                    request = ASRRequest(audio=audio, language=language)
                    seconds, result = timed(lambda r=request: asr.transcribe(r), 1)
                    errors.append(score(ref, result.text))  # type: ignore[attr-defined]
                    times.append(seconds)
            rows.append(
                (asr.settings.model, window, metric, float(np.mean(errors)), float(np.mean(times)))
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no fw-defaults")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3

    tts_settings = TTSSettings()
    joe = PiperTTS.load(tts_settings, resolve_voice("joe", "en", tts_settings))
    espeak_en = EspeakTTS.load(tts_settings, voice_for_language("en"))
    espeak_zh = EspeakTTS.load(tts_settings, voice_for_language("zh"))

    def say(tts, text: str, speed: float = 1.0) -> np.ndarray:  # type: ignore[no-untyped-def]
        return to_16k(tts.synthesize(SynthesisRequest(text=text, voice=tts.voice, speed=speed)))

    lengths = {name: say(joe, text) for name, text in LENGTH_TEXTS.items()}
    english = [(t, say(tts, t)) for t in ENGLISH for tts in (joe, espeak_en)]
    chinese = [(t, say(espeak_zh, t, speed)) for speed in (1.0, 0.8) for t in CHINESE]

    print("\n## Final-pass time (s), 1 thread, median of", repeats, "runs\n")
    header = f"{'model':8} {'utterance':>10} {'fw-defaults':>12} {'30s-window':>11} "
    header += f"{'cut-window':>11} {'after-end':>10}  cut-window text"
    print(header)
    accuracy_rows: list[tuple[str, str, str, float, float]] = []
    for model in ("base", "tiny.en"):
        asr = FasterWhisperASR.load(ASRSettings(model=model))
        bench_lengths(asr, lengths, repeats, naive=not args.quick)
        accuracy_rows += bench_accuracy(asr, english, chinese if model == "base" else [])

    print("\n## Accuracy (28 English clips; 8 Mandarin espeak-ng clips)\n")
    print(f"{'model':8} {'window':>6} {'metric':>7} {'error':>7} {'mean pass s':>12}")
    for model, window, metric, error, seconds in accuracy_rows:
        print(f"{model:8} {window:>6} {metric:>7} {error:>7.3f} {seconds:>12.2f}")

    from talkface.vad.base import VADSettings
    from talkface.vad.silero import SileroVAD

    vad = SileroVAD.load(VADSettings())
    windows = np.concatenate([a for _, a in english])[: 2_000 * 512].reshape(-1, 512)
    seconds, _ = timed(lambda: vad.new_stream().speech_probabilities(windows), repeats)
    print(f"\n## silero VAD: {seconds / len(windows) * 1e3:.3f} ms per 32 ms window")


if __name__ == "__main__":
    main()
