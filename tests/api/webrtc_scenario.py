"""The WebRTC scenario (aiortc as the client), run in a loopback-only network namespace.

    python tests/api/webrtc_scenario.py --out DIR

Starts ``talkface serve``, then, as a program would: refused offers; a session that asks
a question and receives the avatar's audio and video; malformed data-channel messages;
a second session served meanwhile; an interrupt mid-answer; ``DELETE`` of a session.
Writes what it saw to ``DIR/result.json`` (the test checks it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback_netns import interface_addresses, talkface_serve, write_result

from talkface.api.realtime.ice import (
    candidate_addresses,
    install_candidate_policy,
)

EVENT_TIMEOUT_S = 90.0


class Client:
    """One WebRTC session, as a program holding a session token would open it."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.events: list[dict[str, Any]] = []
        self.video: list[tuple[float, int, int]] = []  # (time, width, height)
        self.audio: list[tuple[float, float]] = []  # (time, rms)
        self.session_id: str | None = None
        self.offer_sdp = ""
        self.answer_sdp = ""
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self.channel = self.pc.createDataChannel("talkface")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        self.events.append({"at": time.monotonic(), **json.loads(message)})
        self._changed.set()

    def _on_track(self, track: Any) -> None:
        self._readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            if track.kind == "video":
                self.video.append((time.monotonic(), frame.width, frame.height))
            else:
                samples = frame.to_ndarray().astype(np.float32) / 32768.0
                self.audio.append((time.monotonic(), float(np.sqrt(np.mean(samples**2)))))

    async def connect(self, options: dict[str, Any] | None = None) -> httpx.Response:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offer_sdp = self.pc.localDescription.sdp
        response = await self.http.post(
            "/v1/sessions/webrtc", headers={"Authorization": f"Bearer {self.token}"},
            json={"type": "offer", "sdp": self.offer_sdp, "options": options or {}})
        if response.status_code == 200:
            body = response.json()
            self.session_id, self.answer_sdp = body["session_id"], body["sdp"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"],
                                                                     type="answer"))
            await self.wait_for(lambda e: e["type"] == "ready")
        return response

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        self.channel.send(json.dumps({"v": 1, **message}) if isinstance(message, dict)
                          else message)

    async def wait_for(self, predicate: Any, count: int = 1,
                       timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [e for e in self.events if predicate(e)]
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event after {timeout_s} s; got {self.summary()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    def summary(self) -> list[str]:
        return [e["type"] for e in self.events if e["type"] != "reply_delta"]

    def report(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "events": [e for e in self.events if e["type"] not in ("reply_delta", "pong")],
            "reply": "".join(e["text"] for e in self.events if e["type"] == "reply_delta"),
            "video_frames": len(self.video),
            "video_sizes": sorted({(w, h) for _, w, h in self.video}),
            "audio_frames": len(self.audio),
            "audio_rms": self.audio,
            "offer_candidates": candidate_addresses(self.offer_sdp),
            "answer_candidates": candidate_addresses(self.answer_sdp),
            "connection": self.pc.connectionState,
            "answer_sdp": self.answer_sdp,
        }

    async def close(self) -> None:
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def ask(client: Client, text: str) -> dict[str, Any]:
    """Type ``text``; returns the turn's latency event once the answer has played."""
    answered = len([e for e in client.events if e["type"] == "latency"])
    client.send({"type": "text", "text": text})
    return await client.wait_for(lambda e: e["type"] == "latency", count=answered + 1)


async def run(out: Path) -> dict[str, Any]:
    # Like Chromium's --allow-loopback-in-peer-connection: aioice skips 127.0.0.1 otherwise,
    # and in this namespace there is no other address.
    install_candidate_policy(listen_host="127.0.0.1")
    result: dict[str, Any] = {"interfaces": interface_addresses()}
    env = {"TALKFACE_ANIMATOR__SIZE_PX": "256"}
    http = httpx.AsyncClient(timeout=60.0)
    last: Client | None = None  # still connected when the server stops
    async with http, talkface_serve(out / "server.log", env=env) as served:
        http.base_url = httpx.URL(served.base_url)
        token = (await http.post("/v1/tokens", headers={
            "Authorization": f"Bearer {served.api_key}"})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        # Offers the server must refuse, with a reason.
        refused = {
            "no_credentials": await http.post("/v1/sessions/webrtc",
                                              json={"type": "offer", "sdp": "v=0 nothing"}),
            "bad_sdp": await http.post("/v1/sessions/webrtc", headers=auth,
                                       json={"type": "offer", "sdp": "v=0 this is not sdp"}),
            "unknown_voice": await http.post(
                "/v1/sessions/webrtc", headers=auth,
                json={"type": "offer", "sdp": "v=0 x" * 3, "options": {"voice": "nobody"}}),
            "unknown_avatar": await http.post(
                "/v1/sessions/webrtc", headers=auth,
                json={"type": "offer", "sdp": "v=0 x" * 3, "options": {"avatar_id": "nope"}}),
        }
        result["refused"] = {name: {"status": r.status_code, "body": r.json()}
                             for name, r in refused.items()}

        first = Client(http, token)
        second = Client(http, token)
        try:
            result["first_connect"] = (await first.connect()).status_code
            await ask(first, "Hello, who are you?")
            result["first_turn"] = first.report()
            # Malformed messages: each gets an error event; the session goes on.
            for raw in ("{not json", json.dumps({"type": "dance", "v": 1}),
                        json.dumps({"type": "text", "v": 1, "text": "x" * 5000}),
                        json.dumps({"type": "text", "v": 1}), b"\x00\x01binary"):
                first.send(raw)
            await first.wait_for(lambda e: e["type"] == "error", count=5, timeout_s=20)
            # Another session is served while the first misbehaves, and the first still is.
            result["second_connect"] = (await second.connect()).status_code
            await asyncio.gather(ask(second, "What can you do?"), ask(first, "Thank you."))
            result["after_errors"] = {"first": first.report(), "second": second.report()}
            # An interrupt mid-answer stops the avatar's voice.
            turns_before = len([e for e in first.events if e["type"] == "turn_end"])
            spoken_before = len([e for e in first.events if e["type"] == "speaking"])
            first.send({"type": "text", "text": "Tell me a long story about the sea and ships."})
            speaking = await first.wait_for(lambda e: e["type"] == "speaking",
                                            count=spoken_before + 1)
            await asyncio.sleep(1.0)
            first.send({"type": "interrupt"})
            interrupted = await first.wait_for(lambda e: e["type"] == "interrupted")
            await first.wait_for(lambda e: e["type"] == "turn_end", count=turns_before + 1)
            await asyncio.sleep(1.5)
            result["interrupt"] = {"speaking_at": speaking["at"],
                                   "interrupted_at": interrupted["at"], "report": first.report()}
            # DELETE ends a session: its client is told, its connection closes.
            deleted = await http.delete(f"/v1/sessions/{second.session_id}", headers=auth)
            await second.wait_for(lambda e: e["type"] == "closed", timeout_s=20)
            gone = await http.get(f"/v1/sessions/{second.session_id}", headers=auth)
            result["delete"] = {"status": deleted.status_code, "then_get": gone.status_code,
                                "closed": [e for e in second.events if e["type"] == "closed"]}
        except Exception as exc:
            result["failure"] = f"{type(exc).__name__}: {exc}"
            result["last"] = {"first": first.report(), "second": second.report()}
        finally:
            await first.close()
            await second.close()
        if "failure" not in result:
            last = Client(http, token)
            result["last_connect"] = (await last.connect()).status_code
    # The server stopped (Ctrl-C) with a session live: its client was told.
    if last is not None:
        try:
            await last.wait_for(lambda e: e["type"] == "closed", timeout_s=10)
        except TimeoutError as exc:
            result["failure"] = f"no closed event at shutdown: {exc}"
        result["shutdown"] = last.report()
        await last.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_result(args.out / "result.json", asyncio.run(run(args.out.resolve())))


if __name__ == "__main__":
    main()
