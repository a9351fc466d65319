"""The browser client falls back to the WebSocket when WebRTC cannot connect.

``fallback_scenario.py`` runs ``talkface serve`` and Debian's Chromium in a network
namespace that has nothing but ``lo``; Chromium's WebRTC is kept from connecting with
``--webrtc-ip-handling-policy=disable_non_proxied_udp`` (no proxy, so no ICE candidate:
what a network that blocks UDP does). The page must say so in one line and go on over
``/v1/sessions/ws``: the avatar's answer plays as fragmented MP4 through Media Source
Extensions in the same ``<video>``, the microphone streams as 16 kHz PCM, typing and
Interrupt work. The screenshot is kept in ``test-artifacts/fallback.png``.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .loopback_netns import loopback_netns_unavailable, run_in_loopback_netns
from .test_realtime_browser import CHROMIUM, QUESTION, question_wav

pytestmark = [pytest.mark.serving, pytest.mark.integration, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("fallback_scenario.py")
SCENARIO_TIMEOUT_S = 540.0
# The page gives WebRTC 6 s to connect before it falls back: the question comes after that.
LEAD_SILENCE_S = 12.0


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory, speak: Callable[..., np.ndarray],
         artifacts_dir: Path) -> dict[str, Any]:
    """What the page saw (the scenario runs once for the module)."""
    reason = loopback_netns_unavailable()
    if reason is not None:
        pytest.skip(f"needs a loopback-only network namespace: {reason}")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium: apt-get install -y chromium")
    out = tmp_path_factory.mktemp("fallback")
    wav = question_wav(out / "question.wav", speak("piper", QUESTION), LEAD_SILENCE_S)
    done = run_in_loopback_netns(
        [sys.executable, str(SCENARIO), "--wav", str(wav), "--out", str(out)],
        timeout_s=SCENARIO_TIMEOUT_S)
    log = (out / "server.log").read_text(errors="replace")[-4000:] if (
        out / "server.log").exists() else ""
    assert done.returncode == 0, f"{done.stderr[-4000:]}\nserver log:\n{log}"
    result = json.loads((out / "result.json").read_text())
    for name in ("fallback.png", "failure.png"):
        if (out / name).exists():
            shutil.copy(out / name, artifacts_dir / name)
    assert "failure" not in result, (
        f"{result['failure']}\npage: {result.get('last')}\nconsole: {result['console']}\n{log}")
    return result


def test_the_page_says_webrtc_failed_and_uses_the_websocket(seen: dict[str, Any]) -> None:
    assert all(ipaddress.ip_address(a).is_loopback for a in seen["interfaces"])
    page = seen["connected"]
    media = page["media"]
    assert media["transportName"] == "websocket"
    assert "UDP seems blocked" in media["fallbackReason"]
    assert media["transportNote"].startswith("WebRTC failed")
    assert "WebSocket" in media["transportNote"]
    assert page["candidates"] is None  # no peer connection is left
    assert page["notice"] is None  # a note, not an error
    assert not [line for line in seen["console"] if line.startswith("pageerror")]
    # The page's Content-Security-Policy lets everything it uses load.
    assert not [line for line in seen["console"] if "Content Security Policy" in line]
    # Where the browser has no WebRTC at all, the page says that instead.
    bare = seen["no_webrtc"]["media"]
    assert bare["transportName"] == "websocket" and bare["fallbackReason"] == "not in this browser"


def test_a_spoken_question_is_answered_and_played_over_the_websocket(
    seen: dict[str, Any], wer: Callable[[str, str], float]
) -> None:
    page = seen["spoken"]
    turn = next(t for t in page["turns"].values() if t["latency"] and t["transcript"])
    assert wer(QUESTION, turn["transcript"]) <= 0.35, turn["transcript"]
    assert turn["reply"].strip()
    # While the avatar answered, the <video> played on: time went forward, frames were
    # decoded, and so was its voice.
    before, after = seen["speaking"]["media"], page["media"]
    assert after["time"] - before["time"] >= 1.0
    assert after["totalVideoFrames"] - before["totalVideoFrames"] >= 25
    assert after["audioDecodedBytes"] > before["audioDecodedBytes"]
    assert after["width"] > 0 and not after["paused"]
    assert page["framesShown"] >= 25
    # The page reported the turn's first frame on screen, as over WebRTC.
    assert {"asr_final", "llm_first_token", "first_audio", "first_byte",
            "first_frame_shown"} <= set(turn["latency"])


def test_a_typed_question_is_answered_and_interrupted(
    seen: dict[str, Any], artifacts_dir: Path
) -> None:
    page = seen["interrupted"]
    typed = list(page["turns"].values())[-1]
    assert typed["reply"].strip() and typed["interrupted"]
    assert any(e["type"] == "interrupted" and e["reason"] == "client" for e in page["events"])
    assert page["media"]["time"] > seen["typed_speaking"]["media"]["time"]
    screenshot = artifacts_dir / "fallback.png"
    assert screenshot.exists() and screenshot.stat().st_size > 50_000


def test_the_media_buffer_stays_bounded(seen: dict[str, Any]) -> None:
    media = seen["interrupted"]["media"]
    player = media["player"]
    # Played media is trimmed (10 s kept, in 5 s steps): the buffer never grows with the
    # length of the conversation.
    assert player["bufferedSpanS"] < 18.0
    assert player["trims"] >= 1 or media["time"] < 15.0
