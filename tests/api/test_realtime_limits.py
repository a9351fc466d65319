"""Hostile live clients against a real server on 127.0.0.1: one that stops reading, one
that floods. Each is bounded (closed or answered with errors), and the server goes on
serving the others."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from talkface.api.realtime import outgoing

from .conftest import RunningServer
from .test_realtime_ws import RATE, session, session_token, ws_url

pytestmark = [pytest.mark.serving, pytest.mark.integration]

SLACK_S = 10.0  # what the close itself, and a busy 2-core box, may add to the bound


class RawWebSocket:
    """A minimal WebSocket client on a plain socket, so that its receive buffer can be made
    tiny and its reading stopped: what a stalled phone on a bad network looks like."""

    def __init__(self, url: str, *, receive_buffer_bytes: int) -> None:
        host, _, rest = url.removeprefix("ws://").partition("/")
        name, _, port = host.partition(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.sock.settimeout(30)
        self.sock.connect((name, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self) -> list[tuple[int, bytes]]:
        """The complete frames in what has been read so far (opcode, payload)."""
        frames, data, at = [], self.buffer, 0
        while at + 2 <= len(data):
            opcode, length, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
            if length == 126:
                (length,), start = struct.unpack(">H", data[start:start + 2]), start + 2
            elif length == 127:
                (length,), start = struct.unpack(">Q", data[start:start + 8]), start + 8
            if start + length > len(data):
                break
            frames.append((opcode, data[start:start + length]))
            at = start + length
        return frames

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for opcode, payload in self.frames() if opcode == 1]

    def read_until(self, predicate: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return
            self.buffer += chunk


async def test_a_client_that_stops_reading_is_closed_at_the_bound_and_its_slot_freed(
        server: RunningServer) -> None:
    raw = await asyncio.to_thread(RawWebSocket, ws_url(server, session_token(server)),
                                  receive_buffer_bytes=4096)
    try:
        raw.send_text(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE,
                                  "output": "jpeg"}))
        await asyncio.to_thread(raw.read_until, lambda: raw.events(), 30)
        ready = raw.events()[0]
        assert ready["type"] == "ready"
        # From here on the client reads nothing: frames pile up, then wait, then age.
        stopped = time.monotonic()
        bound_s = outgoing.STALL_TIMEOUT_S + SLACK_S
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers()) as http:
            while (await http.get(f"/v1/sessions/{ready['session_id']}")).status_code == 200:
                assert time.monotonic() - stopped < bound_s, "the stalled session was kept"
                await asyncio.sleep(0.25)

        async def another_session() -> None:  # its slot is free: another one is served
            async with session(server, output="jpeg") as other:
                assert other.of("ready")

        # Meanwhile the client reads on, and learns why it was closed.
        await asyncio.gather(another_session(), asyncio.to_thread(
            raw.read_until, lambda: any(opcode == 8 for opcode, _ in raw.frames()), 30))
        close = [payload for opcode, payload in raw.frames() if opcode == 8]
        assert close and struct.unpack(">H", close[0][:2])[0] == 1013, raw.events()[-3:]
        assert "too slow" in close[0][2:].decode()
        assert raw.events()[-1]["type"] == "closed" and "too slow" in raw.events()[-1]["reason"]
    finally:
        raw.sock.close()


async def test_a_flood_of_messages_is_bounded_and_others_are_served(
        server: RunningServer) -> None:
    """Many messages, fast: the flooder gets errors (not one per message) or is cut off,
    and another session, opened meanwhile, is answered."""
    flood_count, flood_s = 3000, 20.0
    token = session_token(server)
    received: list[dict[str, Any]] = []
    closed_code: int | None = None
    async with connect(ws_url(server, token), max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE,
                                  "output": "jpeg"}))

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    if isinstance(message, str):
                        received.append(json.loads(message))

        reader = asyncio.create_task(read())
        junk = [json.dumps({"type": "dance", "v": 1}), "{not json", bytes(3),
                json.dumps({"type": "frame_presented", "v": 1, "turn_id": 99,
                            "presented_at_ms": 1.0}),
                json.dumps({"type": "ping", "v": 1, "client_time_ms": 1.0}),
                json.dumps({"type": "text", "v": 1, "text": "Say something long."})]
        started = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            for n in range(flood_count):
                if time.monotonic() - started > flood_s:
                    break
                await ws.send(junk[n % len(junk)])
        # While the flood is being digested, another client is served.
        async with session(server, output="jpeg") as other:
            latency = await other.ask("Hello!")
            assert other.reply(latency["turn_id"]).strip()
        await ws.close()
        await asyncio.wait_for(reader, 30)
        closed_code = ws.close_code
    errors = [e for e in received if e["type"] == "error"]
    pongs = [e for e in received if e["type"] == "pong"]
    assert received and received[0]["type"] == "ready"
    # The same mistake is answered at most once a second, not once per message.
    assert 1 <= len(errors) <= 4 * (time.monotonic() - started + 1), len(errors)
    assert len(pongs) <= flood_count // len(junk)
    assert closed_code in (1000, 1008, 1013)
