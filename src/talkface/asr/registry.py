"""ASR backends by name. Add a backend: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

ASR_BACKENDS: dict[str, BackendEntry] = {
    "faster-whisper": BackendEntry(
        "talkface.asr.faster_whisper:FasterWhisperASR",
        "asr",
        "Whisper base / tiny.en through CTranslate2 (int8, CPU), short-window decoding",
    ),
}
