"""VAD backends by name. Add a backend: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

VAD_BACKENDS: dict[str, BackendEntry] = {
    "silero": BackendEntry(
        "talkface.vad.silero:SileroVAD",
        "vad",
        "silero-vad v6 (ONNX through onnxruntime); ~0.2 ms per 32 ms window",
    ),
}
