"""Live sessions over the WebSocket fallback, against a real server on 127.0.0.1.

A client speaks a question as PCM in real time and gets back a stream it can play (fMP4
for MSE, or JPEG frames and PCM), with the transcript, the reply and the latency as JSON
events. Bad input is answered with errors and never takes the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import RunningServer
from .ws_client import EVENT_TIMEOUT_S, RATE, Session, speak_in_real_time

pytestmark = [pytest.mark.serving, pytest.mark.integration]

QUESTION = "What is the capital of France?"


def session_token(server: RunningServer) -> str:
    with server.client() as http:
        response = http.post("/v1/tokens")
    assert response.status_code == 200, response.text
    return response.json()["token"]


def ws_url(server: RunningServer, token: str | None) -> str:
    base = server.base_url.replace("http://", "ws://") + "/v1/sessions/ws"
    return base if token is None else f"{base}?token={token}"


@contextlib.asynccontextmanager
async def session(server: RunningServer, *, output: str = "fmp4",
                  hello: dict[str, Any] | None = None) -> AsyncIterator[Session]:
    """A connected session that said hello and got ``ready``."""
    async with connect(ws_url(server, session_token(server)), max_size=None) as ws:
        live = Session(ws)
        reader = asyncio.create_task(live.read())
        try:
            await live.send(hello or {"type": "hello", "sample_rate_hz": RATE, "output": output})
            await live.wait_for(lambda e: e["type"] == "ready", timeout_s=30)
            yield live
        finally:
            await ws.close()
            await reader


def decode_mp4(data: bytes) -> tuple[int, tuple[int, int], np.ndarray]:
    """Video frames, their size, and the audio samples (mono float) of an MP4 in memory."""
    frames, size, audio = 0, (0, 0), []
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            frames += 1
            size = (frame.width, frame.height)
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(audio=0):
            audio.append(frame.to_ndarray().reshape(-1))
    return frames, size, np.concatenate(audio) if audio else np.zeros(0)


async def test_a_spoken_question_gets_a_playable_fmp4_answer(
    server: RunningServer, speak: Callable[..., np.ndarray], wer: Callable[[str, str], float]
) -> None:
    question = speak("piper", QUESTION)
    async with session(server, output="fmp4") as live:
        await speak_in_real_time(live, question, until=lambda: bool(live.of("latency")),
                                 max_s=EVENT_TIMEOUT_S)
        latency = await live.wait_for(lambda e: e["type"] == "latency")
        await live.send({"type": "end"})  # the session ends once the answer has played
        await live.wait_for(lambda e: e["type"] == "closed", timeout_s=30)
        await asyncio.wait_for(live.closed.wait(), 30)
    turn = latency["turn_id"]
    final = [e for e in live.of("transcript") if e["final"] and e["turn_id"] == turn]
    assert final and wer(QUESTION, final[0]["text"]) <= 0.35, live.of("transcript")
    assert live.reply(turn).strip(), "the avatar said nothing"
    assert live.of("turn_end")[0]["spoken_text"]
    assert live.of("speaking")[0]["turn_id"] == turn
    assert latency["source"] == "speech"
    assert {"asr_final", "first_audio", "first_video_frame", "first_byte"} <= set(
        latency["stages_ms"])
    assert live.of("closed")[-1]["reason"] == "ended"
    # What came in binary frames plays: MSE type announced, H.264 frames, AAC speech.
    mime = live.of("stream_init")[0]["mime"]
    assert mime.startswith('video/mp4; codecs="avc1.') and "mp4a.40.2" in mime
    stream = b"".join(live.binary)
    assert stream[4:8] == b"ftyp"
    frames, size, audio = decode_mp4(stream)
    size_px = server.settings.animator.size_px
    assert size == (size_px, size_px)
    assert frames >= 2 * server.settings.animator.fps  # the idle face, then the answer
    assert audio.size and float(np.sqrt(np.mean(audio**2))) > 0.005  # the answer is heard


async def test_jpeg_output_carries_frames_and_pcm(server: RunningServer) -> None:
    async with session(server, output="jpeg") as live:
        latency = await live.ask("Hello, who are you?")
    assert live.reply(latency["turn_id"]).strip()
    kinds = {frame[:1] for frame in live.binary}
    assert kinds == {b"V", b"A"}
    pictures = [f for f in live.binary if f[:1] == b"V"]
    image = cv2.imdecode(np.frombuffer(pictures[-1][9:], np.uint8), cv2.IMREAD_COLOR)
    size_px = server.settings.animator.size_px
    assert image.shape == (size_px, size_px, 3)
    stamps = [struct.unpack(">Q", f[1:9])[0] for f in pictures]
    assert stamps == sorted(stamps)  # presentation times in µs, in order
    pcm = b"".join(f[9:] for f in live.binary if f[:1] == b"A")
    samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    assert float(np.abs(samples).max()) > 0.05  # speech, not only silence


async def test_malformed_messages_get_errors_and_sessions_go_on(server: RunningServer) -> None:
    limit = server.settings.server.limits.max_ws_message_bytes
    bad: list[tuple[str | bytes, str]] = [
        ("{not json", "not valid JSON"),
        (json.dumps({"type": "dance", "v": 1}), "unknown type 'dance'"),
        (json.dumps({"type": "text", "v": 9, "text": "hi"}), "protocol version 9"),
        (json.dumps({"type": "text", "v": 1}), "text message: text: Field required"),
        (json.dumps({"type": "text", "v": 1, "text": "hi", "x": 1}), "x: Extra inputs"),
        (json.dumps({"type": "text", "v": 1, "text": "y" * 5000}), "the limit is"),
        (json.dumps({"type": "hello", "v": 1}), "first message"),
        (b"\x01\x02\x03", "even number"),
        (bytes(limit + 2), "the limit is"),
    ]
    async with session(server, output="jpeg") as first:
        for message, _ in bad:
            await first.send(message)
        await first.wait_for(lambda e: e["type"] == "error", count=len(bad), timeout_s=30)
        errors = first.of("error")
        for (_, expected), error in zip(bad, errors, strict=True):
            assert expected in error["message"], error
            assert error["code"] in ("bad_input", "payload_too_large")
        # Another session, opened now, is served; so is the one that misbehaved.
        async with session(server, output="jpeg") as second:
            latency = await second.ask("Hello!")
            assert second.reply(latency["turn_id"]).strip()
        latency = await first.ask("Thank you.")
        assert first.reply(latency["turn_id"]).strip()


async def refused(server: RunningServer, token: str | None, first: str | bytes | None
                  ) -> tuple[dict[str, Any], int]:
    """The error event and close code of a handshake the server refuses."""
    ws = await connect(ws_url(server, token), max_size=None)
    received: list[str | bytes] = []
    with contextlib.suppress(ConnectionClosed):
        if first is not None:
            await ws.send(first)  # the server may have refused and closed already
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(30):
            async for message in ws:
                received.append(message)
    await ws.close()
    assert received, "the server closed without saying why"
    assert ws.close_code is not None
    return json.loads(received[0]), ws.close_code


async def test_handshakes_without_credentials_or_hello_are_refused(server: RunningServer) -> None:
    hello = json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE})
    error, code = await refused(server, None, hello)
    assert (error["code"], code) == ("unauthorized", 4401)
    signer = server.app.state.talkface.auth.signer
    expired, _ = signer.issue("0" * 12, -1.0)
    error, code = await refused(server, expired, hello)
    assert code == 4401 and "expired" in error["message"]
    token = session_token(server)
    error, code = await refused(server, token, bytes(640))
    assert code == 1008 and "hello" in error["message"]
    error, code = await refused(server, token, json.dumps({"type": "text", "v": 1, "text": "hi"}))
    assert code == 1008 and "first message must be hello" in error["message"]
    error, code = await refused(server, token, json.dumps(
        {"type": "hello", "v": 1, "sample_rate_hz": 1000}))
    assert code == 1008 and "sample_rate_hz" in error["message"]
    error, code = await refused(server, token, json.dumps(
        {"type": "hello", "v": 1, "options": {"voice": "nobody"}}))
    assert code == 1008 and "unknown voice" in error["message"]
    error, code = await refused(server, token, json.dumps(
        {"type": "hello", "v": 1, "options": {"avatar_id": "someone-elses"}}))
    assert (error["code"], code) == ("avatar_not_found", 1008)


async def test_a_full_server_refuses_new_sessions_with_503(server: RunningServer) -> None:
    limit = server.settings.server.limits.max_sessions
    token = session_token(server)
    hello = json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE, "output": "jpeg"})
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(limit):
            await stack.enter_async_context(session(server, output="jpeg"))
        error, code = await refused(server, token, hello)
        assert (error["code"], code) == ("overloaded", 4503)
        assert error["retryable"] is True and error["retry_after_s"] >= 1  # as the docs say
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.post(
                "/v1/sessions/webrtc", json={"type": "offer", "sdp": "v=0 " + "x" * 20},
                headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503 and "Retry-After" in response.headers
    # Once they are gone, sessions are served again.
    async with session(server, output="jpeg") as live:
        assert live.of("ready")
