"""The voice catalogue: every voice of every installed TTS backend, and picking one."""

from __future__ import annotations

from talkface.errors import BackendUnavailable, BadInput
from talkface.registry import load_backend_class
from talkface.tts.base import DEFAULT_ZH_VOICES, TTSBackend, TTSSettings, VoiceInfo
from talkface.tts.registry import TTS_BACKENDS


def backend_class(name: str) -> type[TTSBackend]:
    """The TTS backend class registered as ``name`` (imported on first use)."""
    return load_backend_class("TTS", TTS_BACKENDS, name)


def list_voices() -> list[VoiceInfo]:
    """All voices available on this machine (backends whose packages are missing are skipped)."""
    voices: list[VoiceInfo] = []
    for name in TTS_BACKENDS:
        try:
            voices.extend(backend_class(name).list_voices())
        except BackendUnavailable:
            continue
    return voices


def resolve_voice(name: str | None, language: str, settings: TTSSettings) -> VoiceInfo:
    """The voice called ``name``, or the default voice for ``language``.

    ``name`` may also be the path of a piper ``.onnx`` voice, or ``espeak-<lang>`` for any
    language espeak-ng knows.

    Raises:
        BadInput: no such voice; the message lists the ones there are.
    """
    voices = list_voices()
    if name is None:
        name = settings.voice_en
        if language == "zh":
            name = settings.voice_zh or _first_installed(DEFAULT_ZH_VOICES, voices)
        elif language != "en":
            name = f"espeak-{language}"
    for voice in voices:
        if voice.name == name:
            return voice
    if name.endswith(".onnx"):
        from talkface.tts.piper import voice_from_path

        return voice_from_path(name)
    if name.startswith("espeak-") and any(v.backend == "espeak" for v in voices):
        from talkface.tts.espeak import voice_for_language

        return voice_for_language(name.removeprefix("espeak-"))
    known = ", ".join(v.name for v in voices) or "none (run: talkface doctor)"
    raise BadInput(f"unknown voice {name!r}; available voices: {known}")


def _first_installed(names: tuple[str, ...], voices: list[VoiceInfo]) -> str:
    installed = {v.name for v in voices}
    return next((n for n in names if n in installed), names[-1])
