"""One refusal at every door: the text policy (talkface/text/policy.py) answers alike.

``talkface say``, a render job (``POST /v1/renders``), a live WebSocket session and
``/v1/audio/speech`` are given the same over-long text, and a voice that cannot speak the
text's language; each refuses with the same message, in its own way (an exit code, an
HTTP status, an error event).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from talkface.errors import BadInput, PayloadTooLarge
from talkface.text.policy import check_text, check_voice_language
from talkface.tts.base import VoiceInfo

from .conftest import RunningServer
from .ws_client import RATE, Session

pytestmark = [pytest.mark.serving, pytest.mark.integration]

CHINESE = "你好，很高兴为您服务。今天天气很好。"
ENGLISH_VOICE = "joe"  # a piper voice: English only


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def limit_of(server: RunningServer) -> int:
    return server.settings.server.limits.max_text_chars


def too_long(server: RunningServer) -> str:
    return "word " * (limit_of(server) // 5 + 1)


def policy_message(error: type[Exception], check: Any) -> str:
    """What the policy itself says: the message every door must give."""
    with pytest.raises(error) as caught:
        check()
    return str(caught.value)


def say(server: RunningServer, tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    """Run ``talkface say`` with the server's text limit; returns its error line."""
    env = {**os.environ,
           "TALKFACE_LIMITS__MAX_TEXT_CHARS": str(limit_of(server))}
    result = subprocess.run(
        [sys.executable, "-m", "talkface.cli", "say", *args, "-o", str(tmp_path / "out.mp4")],
        input=stdin, capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("error: ")


def http_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return str(error["message"])


def ws_refusal(server: RunningServer, http: httpx.Client,
               options: dict[str, str] | None = None, text: str | None = None) -> dict[str, Any]:
    """The error event a live session answers with: to its hello (``options``), or to a
    typed ``text`` after it is ready."""
    token = http.post("/v1/tokens").json()["token"]
    url = server.base_url.replace("http://", "ws://") + f"/v1/sessions/ws?token={token}"
    return asyncio.run(_ws_refusal(url, options, text))


async def _ws_refusal(url: str, options: dict[str, str] | None,
                      text: str | None) -> dict[str, Any]:
    async with connect(url, max_size=None) as ws:
        live = Session(ws)
        reader = asyncio.create_task(live.read())
        try:
            await live.send({"type": "hello", "sample_rate_hz": RATE, "output": "jpeg",
                             "options": options or {}})
            if text is not None:
                await live.wait_for(lambda e: e["type"] == "ready", timeout_s=30)
                await live.send({"type": "text", "text": text})
            return await live.wait_for(lambda e: e["type"] == "error", timeout_s=30)
        finally:
            await ws.close()
            await reader


def test_an_over_long_text_is_refused_alike_at_every_door(
    server: RunningServer, http: httpx.Client, tmp_path: Path
) -> None:
    text = too_long(server)
    expected = policy_message(PayloadTooLarge,
                              lambda: check_text(text, limit_chars=limit_of(server)))

    assert say(server, tmp_path, "-", stdin=text) == expected
    assert http_error(http.post("/v1/renders", json={"text": text}),
                      413, "payload_too_large") == expected
    assert http_error(http.post("/v1/audio/speech", json={"input": text}),
                      413, "payload_too_large") == expected
    event = ws_refusal(server, http, text=text)
    assert (event["code"], event["message"]) == ("payload_too_large", expected)


def test_a_voice_that_cannot_speak_the_language_is_refused_alike_at_every_door(
    server: RunningServer, http: httpx.Client, tmp_path: Path
) -> None:
    voice = server.app.state.talkface.runtime.resolve_voice(ENGLISH_VOICE, "en")
    assert isinstance(voice, VoiceInfo) and voice.language == "en"
    expected = policy_message(BadInput, lambda: check_voice_language(voice, "zh"))

    assert say(server, tmp_path, CHINESE, "--voice", ENGLISH_VOICE) == expected
    assert http_error(http.post("/v1/renders", json={"text": CHINESE, "voice": ENGLISH_VOICE}),
                      400, "bad_input") == expected
    assert http_error(
        http.post("/v1/audio/speech", json={"input": CHINESE, "voice": ENGLISH_VOICE}),
        400, "bad_input") == expected
    event = ws_refusal(server, http, options={"voice": ENGLISH_VOICE, "language": "zh"})
    assert (event["code"], event["message"]) == ("bad_input", expected)
