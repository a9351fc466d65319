"""Live sessions over WebRTC, with aiortc as the client, on loopback only.

The scenario (``webrtc_scenario.py``) runs ``talkface serve`` and its clients in a new
network namespace that has nothing but ``lo``, so no ICE candidate, STUN request or
stray packet can leave the machine; the test checks what the clients saw.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .loopback_netns import loopback_netns_unavailable, run_in_loopback_netns

pytestmark = [pytest.mark.serving, pytest.mark.integration, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("webrtc_scenario.py")
SCENARIO_TIMEOUT_S = 540.0


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the scenario's clients saw (it runs once for the module)."""
    reason = loopback_netns_unavailable()
    if reason is not None:
        pytest.skip(f"needs a loopback-only network namespace: {reason}")
    out = tmp_path_factory.mktemp("webrtc")
    done = run_in_loopback_netns([sys.executable, str(SCENARIO), "--out", str(out)],
                                 timeout_s=SCENARIO_TIMEOUT_S)
    log = (out / "server.log").read_text(errors="replace")[-4000:] if (
        out / "server.log").exists() else ""
    assert done.returncode == 0, f"{done.stderr[-4000:]}\nserver log:\n{log}"
    result = json.loads((out / "result.json").read_text())
    assert "failure" not in result, f"{result['failure']}\n{result.get('last')}\n{log}"
    return result


def loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def loudest(report: dict[str, Any], after: float | None = None) -> float:
    return max((rms for at, rms in report["audio_rms"] if after is None or at >= after),
               default=0.0)


def test_only_loopback_is_used(seen: dict[str, Any]) -> None:
    assert loopback(seen["interfaces"])
    first = seen["first_turn"]
    assert loopback(first["offer_candidates"]) and loopback(first["answer_candidates"])
    assert "stun:" not in first["answer_sdp"]


def test_bad_offers_are_refused_with_the_reason(seen: dict[str, Any]) -> None:
    refused = seen["refused"]
    assert refused["no_credentials"]["status"] == 401
    assert refused["bad_sdp"]["status"] == 400
    assert "SDP offer could not be used" in refused["bad_sdp"]["body"]["error"]["message"]
    assert refused["unknown_voice"]["status"] == 400
    assert "unknown voice 'nobody'" in refused["unknown_voice"]["body"]["error"]["message"]
    assert refused["unknown_avatar"]["status"] == 404
    assert refused["unknown_avatar"]["body"]["error"]["code"] == "avatar_not_found"


def test_a_question_is_answered_with_audio_video_and_events(seen: dict[str, Any]) -> None:
    assert seen["first_connect"] == 200
    first = seen["first_turn"]
    kinds = [e["type"] for e in first["events"]]
    assert kinds[0] == "ready"
    assert kinds.index("speaking") < kinds.index("turn_end") < kinds.index("latency")
    assert first["reply"].strip()
    latency = next(e for e in first["events"] if e["type"] == "latency")
    assert {"llm_first_token", "first_audio", "first_video_frame", "first_byte"} <= set(
        latency["stages_ms"])
    # The face was on screen all along (idle, then speaking) at 256 px, and it was heard.
    assert first["video_frames"] >= 50 and first["video_sizes"] == [[256, 256]]
    assert loudest(first) > 0.01


def test_malformed_messages_get_errors_and_sessions_go_on(seen: dict[str, Any]) -> None:
    first, second = seen["after_errors"]["first"], seen["after_errors"]["second"]
    errors = [e for e in first["events"] if e["type"] == "error"]
    messages = " | ".join(e["message"] for e in errors)
    for expected in ("not valid JSON", "unknown type 'dance'", "the limit is 4000",
                     "text: Field required", "not binary"):
        assert expected in messages
    assert len([e for e in first["events"] if e["type"] == "latency"]) == 2
    assert seen["second_connect"] == 200 and second["reply"].strip()
    assert second["video_frames"] > 0 and loudest(second) > 0.01


def test_an_interrupt_stops_the_voice(seen: dict[str, Any]) -> None:
    interrupt = seen["interrupt"]
    report = interrupt["report"]
    cut = [e for e in report["events"] if e["type"] == "interrupted"]
    assert cut and cut[-1]["reason"] == "client"
    ends = [e for e in report["events"] if e["type"] == "turn_end" and e["interrupted"]]
    assert ends and ends[-1]["turn_id"] == cut[-1]["turn_id"]
    # It was talking before the interrupt, and it is silent half a second after it.
    assert loudest(report, after=interrupt["speaking_at"]) > 0.01
    assert loudest(report, after=interrupt["interrupted_at"] + 0.5) < 0.002


def test_delete_ends_a_session(seen: dict[str, Any]) -> None:
    deleted = seen["delete"]
    assert deleted["status"] == 204 and deleted["then_get"] == 404
    assert deleted["closed"][0]["reason"] == "ended by DELETE /v1/sessions"


def test_live_sessions_are_told_when_the_server_stops(seen: dict[str, Any]) -> None:
    assert seen["last_connect"] == 200
    closed = [e for e in seen["shutdown"]["events"] if e["type"] == "closed"]
    assert closed and closed[0]["reason"] == "the server is shutting down"
