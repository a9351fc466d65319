"""The browser client end to end, in real Chromium, on loopback only.

``browser_scenario.py`` runs ``talkface serve`` and Debian's Chromium (driven by
Playwright, never downloaded) in a network namespace that has nothing but ``lo``. The
page opens the link the server printed, connects over WebRTC, hears a question spoken
through a fake microphone (a WAV made here with the project's TTS), shows the avatar
answering, then answers a typed question and shrugs off malformed messages. The
screenshot is kept in ``test-artifacts/browser.png`` (the README shows it).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16

from .loopback_netns import loopback_netns_unavailable, run_in_loopback_netns

pytestmark = [pytest.mark.serving, pytest.mark.integration, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("browser_scenario.py")
CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "What can you do for me?"
RATE = 16_000
LEAD_SILENCE_S = 2.0  # the page connects while the fake microphone already plays
TAIL_SILENCE_S = 40.0
SCENARIO_TIMEOUT_S = 540.0


def question_wav(path: Path, speech: np.ndarray, lead_s: float = LEAD_SILENCE_S) -> Path:
    """The fake microphone's WAV: ``speech`` (16 kHz float32) between silences."""
    samples = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), speech,
                              np.zeros(int(TAIL_SILENCE_S * RATE), np.float32)])
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(float32_to_pcm16(samples))
    return path


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory, speak: Callable[..., np.ndarray],
         artifacts_dir: Path) -> dict[str, Any]:
    """What the page saw (the scenario runs once for the module)."""
    reason = loopback_netns_unavailable()
    if reason is not None:
        pytest.skip(f"needs a loopback-only network namespace: {reason}")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium: apt-get install -y chromium")
    out = tmp_path_factory.mktemp("browser")
    wav = question_wav(out / "question.wav", speak("piper", QUESTION))
    done = run_in_loopback_netns(
        [sys.executable, str(SCENARIO), "--wav", str(wav), "--out", str(out)],
        timeout_s=SCENARIO_TIMEOUT_S)
    log = (out / "server.log").read_text(errors="replace")[-4000:] if (
        out / "server.log").exists() else ""
    assert done.returncode == 0, f"{done.stderr[-4000:]}\nserver log:\n{log}"
    result = json.loads((out / "result.json").read_text())
    for name in ("browser.png", "failure.png"):
        if (out / name).exists():
            shutil.copy(out / name, artifacts_dir / name)
    assert "failure" not in result, (
        f"{result['failure']}\npage: {result.get('last')}\nconsole: {result['console']}\n{log}")
    return result


def test_the_page_connects_on_loopback_only(seen: dict[str, Any]) -> None:
    assert all(ipaddress.ip_address(a).is_loopback for a in seen["interfaces"])
    candidates = seen["spoken"]["candidates"]
    assert candidates and all(ipaddress.ip_address(a).is_loopback for a in candidates.values())
    assert seen["spoken"]["notice"] is None  # no error shown to the user
    assert not [line for line in seen["console"] if line.startswith("pageerror")]
    # The page's Content-Security-Policy lets everything it uses load.
    assert not [line for line in seen["console"] if "Content Security Policy" in line]


def test_a_spoken_question_is_heard_answered_and_shown(
    seen: dict[str, Any], wer: Callable[[str, str], float]
) -> None:
    page = seen["spoken"]
    turn = next(t for t in page["turns"].values() if t["latency"])
    assert wer(QUESTION, turn["transcript"]) <= 0.35, turn["transcript"]
    assert turn["reply"].strip()
    # The avatar's video and voice arrived and played.
    video, audio = page["stats"]["video"], page["stats"]["audio"]
    assert video["framesDecoded"] >= 50 and video["width"] == page["video"]["width"] > 0
    assert page["framesShown"] >= 50 and not page["video"]["paused"]
    assert audio["audioEnergy"] > 0.01
    # The latency readout has the whole waterfall, up to the first frame on screen.
    stages = turn["latency"]
    assert {"vad_end", "asr_final", "llm_first_token", "first_audio", "first_video_frame",
            "first_byte", "first_frame_shown"} <= set(stages)


def test_a_typed_question_is_answered_and_the_screenshot_is_kept(
    seen: dict[str, Any], artifacts_dir: Path
) -> None:
    typed = seen["typed"]
    answered = [t for t in typed["turns"].values() if t["latency"]]
    assert len(answered) >= 2 and answered[-1]["reply"].strip()
    assert answered[-1]["latency"]["first_frame_shown"] > 0
    screenshot = artifacts_dir / "browser.png"
    assert screenshot.exists() and screenshot.stat().st_size > 50_000


def test_malformed_data_channel_messages_get_errors_and_the_session_goes_on(
    seen: dict[str, Any]
) -> None:
    page = seen["after_errors"]
    messages = " | ".join(e["message"] for e in page["errors"])
    for expected in ("not valid JSON", "unknown type 'dance'", "the limit is",
                     "protocol version 7"):
        assert expected in messages
    answered = [t for t in page["turns"].values() if t["latency"]]
    assert len(answered) >= 3 and answered[-1]["reply"].strip()


def test_the_page_says_what_went_wrong(seen: dict[str, Any]) -> None:
    notices = seen["notices"]
    assert "The server is busy" in notices["busy"]["notice"]
    assert "limit of 1 live sessions" in notices["busy"]["notice"]
    assert "needs a session token" in notices["no_token"]["notice"]
    assert not notices["no_token"]["start_enabled"]
    assert "session token was refused" in notices["bad_token"]["notice"]
    assert seen["ended"]["status"] == "ended"


def test_without_a_microphone_the_page_says_so_and_typing_works(seen: dict[str, Any]) -> None:
    page = seen["mic_denied"]
    assert "Microphone access was denied" in page["notice"]
    answered = [t for t in page["turns"].values() if t["latency"]]
    assert answered and answered[0]["reply"].strip()
    assert page["stats"]["video"]["framesDecoded"] > 0
