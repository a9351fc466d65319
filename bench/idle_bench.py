"""What a silent live session costs the server, with and without the shared idle loop.

    .venv/bin/python bench/idle_bench.py --sessions 4 --seconds 20

Starts ``talkface serve`` on 127.0.0.1 twice, with the idle loop off
(``TALKFACE_SERVER__IDLE_CLIP__ENABLED=false``: every idle frame animated and encoded per
session) and on (the default), connects ``--sessions`` WebSocket sessions (``--output``
jpeg or fmp4; or WebRTC sessions of aiortc, ``--output webrtc``, microphone off) that say
nothing (each streams microphone silence in real time, as a browser with its microphone
on does, unless ``--no-mic``), lets them settle, and reads
the server process's CPU time
(``/proc/<pid>/stat``) over ``--seconds``. Prints the server's cores with no session, with
the sessions, per session (the difference divided by the sessions), and the frames each
session received per second (the stream kept its pace). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # 32 ms of microphone audio per message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def _server(*, idle_clip: bool, size_px: int) -> AsyncIterator[tuple[str, str, int]]:
    import httpx

    port, key = _free_port(), "idle-bench-" + os.urandom(8).hex()
    env = {**os.environ, "TALKFACE_API_KEYS": key,
           "TALKFACE_SERVER__IDLE_CLIP__ENABLED": "true" if idle_clip else "false",
           "TALKFACE_ANIMATOR__SIZE_PX": str(size_px),
           "TALKFACE_SERVER__LIMITS__MAX_SESSIONS": "64",
           "TALKFACE_SERVER__RATE_LIMIT__REQUESTS_PER_S": "1000",
           "TALKFACE_SERVER__RATE_LIMIT__BURST": "1000"}
    process = subprocess.Popen(  # noqa: ASYNC220 - spawning is quick
        [sys.executable, "-m", "talkface.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("the server did not become ready in 5 minutes")
        yield url, key, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class _SilentUser:
    def __init__(self, url: str, token: str, index: int, *, mic: bool, output: str) -> None:
        self._url = url.replace("http://", "ws://") + f"/v1/sessions/ws?token={token}"
        self._index = index
        self._mic = mic
        self._output = output
        self.ready = asyncio.Event()
        self.frames = 0

    async def run(self, stop: asyncio.Event) -> None:
        import websockets

        async with websockets.connect(self._url, max_size=2**24) as ws:
            await ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE_HZ,
                                      "output": self._output,
                                      "options": {"seed": self._index}}))
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self._read(ws))
                mic = group.create_task(self._microphone(ws)) if self._mic else None
                await stop.wait()
                reader.cancel()
                if mic is not None:
                    mic.cancel()

    async def _read(self, ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            if isinstance(message, bytes):
                if message[:1] == b"V" or self._output == "fmp4":
                    self.frames += 1  # (fmp4: fragments)
            elif json.loads(message).get("type") == "ready":
                self.ready.set()

    async def _microphone(self, ws: object) -> None:
        await self.ready.wait()
        silence = bytes(2 * CHUNK_SAMPLES)
        start, sent = time.monotonic(), 0
        while True:
            await asyncio.sleep(max(0.0, start + sent / RATE_HZ - time.monotonic()))
            await ws.send(silence)  # type: ignore[attr-defined]
            sent += CHUNK_SAMPLES


class _SilentWebRTCUser:
    """A silent session over WebRTC (aiortc as the browser): it decodes what it receives.

    Run the bench in a loopback-only network namespace for this output (ICE gathers every
    interface): ``unshare -n sh -c 'ip link set lo up && python bench/idle_bench.py
    --output webrtc'``.
    """

    def __init__(self, url: str, token: str, index: int, *, mic: bool, output: str) -> None:
        self._url = url
        self._token = token
        self._index = index
        self.ready = asyncio.Event()
        self.frames = 0

    async def run(self, stop: asyncio.Event) -> None:
        import httpx
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from talkface.api.realtime.ice import install_candidate_policy

        # Like a browser allowed loopback: aioice leaves 127.0.0.1 out otherwise.
        install_candidate_policy(listen_host="127.0.0.1")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("talkface")
        channel.on("message", lambda message: self._on_message(message))
        readers: list[asyncio.Task[None]] = []
        pc.on("track", lambda track: readers.append(asyncio.create_task(self._read(track))))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with httpx.AsyncClient(base_url=self._url, trust_env=False,
                                         timeout=60) as http:
                response = await http.post(
                    "/v1/sessions/webrtc", headers={"Authorization": f"Bearer {self._token}"},
                    json={"type": "offer", "sdp": pc.localDescription.sdp,
                          "options": {"seed": self._index}})
                if response.status_code != 200:
                    raise RuntimeError(f"the server refused the offer: {response.text}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=response.json()["sdp"],
                                                                type="answer"))
            await stop.wait()
        finally:
            await pc.close()
            for reader in readers:
                reader.cancel()

    def _on_message(self, message: str) -> None:
        if json.loads(message).get("type") == "ready":
            self.ready.set()

    async def _read(self, track: object) -> None:
        while True:
            frame = await track.recv()  # type: ignore[attr-defined]
            if getattr(track, "kind", "") == "video":
                self.frames += 1
                del frame


async def measure(*, idle_clip: bool, sessions: int, seconds: float, settle_s: float,
                  size_px: int, mic: bool, output: str) -> dict[str, float]:
    import httpx

    async with _server(idle_clip=idle_clip, size_px=size_px) as (url, key, pid):
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{url}/v1/tokens",
                                         headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()
            token = response.json()["token"]
        await asyncio.sleep(settle_s)
        before = _cpu_s(pid)
        await asyncio.sleep(seconds)
        empty_cores = (_cpu_s(pid) - before) / seconds
        user = _SilentWebRTCUser if output == "webrtc" else _SilentUser
        users = [user(url, token, i, mic=mic, output=output) for i in range(sessions)]
        stop = asyncio.Event()
        running = asyncio.gather(*(u.run(stop) for u in users))
        try:
            async with asyncio.timeout(120):
                ready = asyncio.gather(*(u.ready.wait() for u in users))
                await asyncio.wait([ready, running], return_when=asyncio.FIRST_COMPLETED)
                if running.done():
                    running.result()  # a user failed: say why
                await ready
            await asyncio.sleep(settle_s)  # the loop is built, the first frames are out
            frames_before = sum(u.frames for u in users)
            before = _cpu_s(pid)
            await asyncio.sleep(seconds)
            cores = (_cpu_s(pid) - before) / seconds
            frames = sum(u.frames for u in users) - frames_before
        finally:
            stop.set()
            await running
    return {"empty_cores": empty_cores, "cores": cores,
            "per_session": (cores - empty_cores) / sessions,
            "fps_per_session": frames / seconds / sessions}


async def main(args: argparse.Namespace) -> None:
    mic = "microphone silence streamed" if args.mic else "no microphone"
    print(f"{args.sessions} silent {args.output} sessions, {args.size_px} px, "
          f"{args.seconds:g} s each ({mic})")
    print(f"{'idle loop':10s} {'no session':>11s} {'sessions':>9s} {'per session':>12s} "
          f"{'fragments/s' if args.output == 'fmp4' else 'frames/s':>12s}")
    for idle_clip in (False, True):
        result = await measure(idle_clip=idle_clip, sessions=args.sessions,
                               seconds=args.seconds, settle_s=args.settle_s,
                               size_px=args.size_px, mic=args.mic, output=args.output)
        print(f"{'on' if idle_clip else 'off':10s} {result['empty_cores']:11.3f} "
              f"{result['cores']:9.3f} {result['per_session']:12.3f} "
              f"{result['fps_per_session']:12.1f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=4.0)
    parser.add_argument("--size-px", type=int, default=512)
    parser.add_argument("--output", choices=("jpeg", "fmp4", "webrtc"), default="jpeg",
                        help="webrtc: run in a loopback-only network namespace (see "
                             "_SilentWebRTCUser)")
    parser.add_argument("--no-mic", dest="mic", action="store_false")
    asyncio.run(main(parser.parse_args()))
