"""``talkface bench load``: concurrent simulated users against a real server, on loopback.

Each user opens a WebSocket session (``output="jpeg"``), then, turn after turn, speaks
a recorded question into it in real time, waits for the avatar's answer to finish, thinks
a moment and asks the next one, until the run's time is up. Measured per turn: time to
first frame (from the end of the user's speech to the avatar starting to speak, on the
client's clock); per session: frames received per second while the avatar speaks,
frames missing from the stream, errors; for the server process: CPU and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkface.audio import float32_to_pcm16
from talkface.bench.render_job import BackgroundRender

RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # 32 ms
_MEDIA_HEADER = struct.Struct(">cQ")
QUESTIONS = (
    "What can you do for me?",
    "What time does the store open?",
    "Can you recommend a good book?",
    "How is the weather today?",
    "Where is the nearest train station?",
    "What is your name?",
)

Progress = Callable[[str], None]
_RENDER_JOB_WAIT_S = 900.0
"""Longest the run waits, after the users are done, for its render job to finish."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """One load test.

    Attributes:
        sessions: concurrent users.
        duration_s: how long they keep talking (turns in progress are finished).
        think_s: pause between the end of an answer and the next question.
        url: a running server (default: start one on a free loopback port).
        api_key: its API key (with ``url``).
        stagger_s: users start this far apart, so their turns do not all line up.
        idle_s: first, every user connects and stays silent this long: the server's CPU
            then is what live sessions cost while nobody talks (idle video, transport).
        engines: where the started server runs its models ("local" or "ray"); with
            "ray", the server's CPU is the gateway's only (the replicas are other processes).
        server_log: where the started server's output goes (default: discarded).
        render_job_s: when above 0, render jobs of about this many seconds of video each
            run one after another while the users talk (live before batch: how much do
            they slow the users, and do they finish?).
        questions: what the users ask (spoken by the piper voice), each user starting
            at its own place in the list.
        server_env: settings for the started server, as ``TALKFACE_...`` environment
            variables (a FAQ file, a cache directory...).
    """

    sessions: int = 1
    duration_s: float = 120.0
    think_s: float = 2.0
    url: str | None = None
    api_key: str | None = None
    stagger_s: float = 3.0
    idle_s: float = 5.0
    engines: str = "local"
    server_log: Path | None = None
    render_job_s: float = 0.0
    questions: tuple[str, ...] = QUESTIONS
    server_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class TurnResult:
    session: int
    question: str
    ttff_ms: float | None
    asked_at_s: float = 0.0
    """When the question's speech ended (``time.monotonic()``)."""
    transcript: str = ""
    server_latency_ms: dict[str, float] = field(default_factory=dict)
    speech_s: float = 0.0
    speaking_s: float = 0.0
    reply_chars: int = 0
    prompt_tokens: int | None = None
    evaluated_prompt_tokens: int | None = None
    route: str | None = None
    """Who answered (the ``latency`` event's ``route``): ``faq``, ``small`` or ``large``."""
    error: str | None = None

    @property
    def delivery_ms(self) -> float | None:
        """From the server's first video frame (its own trace) to the client seeing it."""
        server_ms = self.server_latency_ms.get("first_video_frame")
        if self.ttff_ms is None or server_ms is None:
            return None
        return self.ttff_ms - server_ms


@dataclass(slots=True)
class SessionResult:
    frames: int = 0
    speaking_s: float = 0.0
    speaking_frames: int = 0
    missing_frames: int = 0
    errors: list[str] = field(default_factory=list)
    fps: int | None = None
    """The frame rate the server gave the session (its ``ready``)."""
    frames_by_second: dict[int, int] = field(default_factory=dict)
    """Video frames received in each second of ``time.monotonic()``."""
    refusal: dict[str, object] | None = None
    """The server's error event when it refused the session."""

    def min_fps(self, window_s: int = 5) -> float | None:
        """The fewest frames per second received in any ``window_s`` whole seconds of the
        session (its first and last, partial, seconds left out); None when shorter."""
        if len(self.frames_by_second) < window_s + 2:
            return None
        first, last = min(self.frames_by_second) + 1, max(self.frames_by_second) - 1
        counts = [self.frames_by_second.get(s, 0) for s in range(first, last + 1)]
        return min(sum(counts[i:i + window_s]) / window_s
                   for i in range(len(counts) - window_s + 1))


@dataclass(slots=True)
class LoadResult:
    """Everything a load run measured."""

    options: LoadOptions
    turns: list[TurnResult]
    sessions: list[SessionResult]
    wall_s: float
    server_cpu_s: float | None
    server_rss_mb: float | None
    idle_server_cpu_cores: float | None = None
    render_job: BackgroundRender | None = None

    def ttffs_ms(self) -> list[float]:
        return [t.ttff_ms for t in self.turns if t.ttff_ms is not None]

    def summary(self) -> dict[str, object]:
        ttff = self.ttffs_ms()
        def pct(q: float, values: list[float] = ttff) -> float | None:
            return (round(float(np.percentile(values, q)), 1) if values else None)
        speaking_s = sum(s.speaking_s for s in self.sessions)
        delivery = [t.delivery_ms for t in self.turns if t.delivery_ms is not None]
        return {
            "sessions": self.options.sessions,
            "turns": len(self.turns),
            "turns_with_answer": len(ttff),
            "ttff_p50_ms": pct(50),
            "ttff_p95_ms": pct(95),
            "ttff_p99_ms": pct(99),
            "fps_while_speaking": round(sum(s.speaking_frames for s in self.sessions)
                                        / speaking_s, 2) if speaking_s else None,
            "missing_frames": sum(s.missing_frames for s in self.sessions),
            "errors": sum(len(s.errors) for s in self.sessions)
            + sum(1 for t in self.turns if t.error),
            "server_cpu_cores": round(self.server_cpu_s / self.wall_s, 2)
            if self.server_cpu_s is not None else None,
            "server_rss_mb": self.server_rss_mb,
            "idle_server_cpu_cores": self.idle_server_cpu_cores,
            "delivery_p50_ms": round(float(np.median(delivery)), 1) if delivery else None,
            "mean_utterance_s": round(statistics.mean(t.speech_s for t in self.turns), 2)
            if self.turns else None,
            "mean_reply_chars": round(statistics.mean(t.reply_chars for t in self.turns), 1)
            if self.turns else None,
            "routes": dict(Counter(t.route for t in self.turns if t.route)),
            **self._render_job_summary(pct),
        }

    def _render_job_summary(self, pct: Callable[..., float | None]) -> dict[str, object]:
        job = self.render_job
        if job is None:
            return {}
        during = [t.ttff_ms for t in self.turns
                  if t.ttff_ms is not None and job.covers(t.asked_at_s)]
        return {"render_job": job.summary(), "turns_during_render_job": len(during),
                "ttff_p50_during_render_job_ms": pct(50, during),
                "ttff_p95_during_render_job_ms": pct(95, during)}


def synthesise_questions(questions: Sequence[str] = QUESTIONS) -> list[tuple[str, np.ndarray]]:
    """``questions``, spoken by the piper voice, as 16 kHz float32."""
    from talkface.audio import pcm16_to_float32, resample
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    tts = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    spoken = []
    for text in questions:
        speech = tts.synthesize(SynthesisRequest(text=text, voice=tts.voice))
        spoken.append((text, resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz,
                                      RATE_HZ).astype(np.float32)))
    return spoken


class _Microphone:
    """One continuous real-time audio stream: queued speech, silence in between.

    A single sample clock paces everything sent, so the server's audio timeline stays on
    the wall clock for the whole run (separate senders for speech and silence drift by
    up to a chunk at every hand-over).
    """

    def __init__(self, ws: object) -> None:
        self._ws = ws
        self._start_s = time.monotonic()
        self._sent = 0  # samples sent so far
        self._queued = np.zeros(0, np.float32)

    def say(self, audio: np.ndarray) -> float:
        """Queue ``audio`` after what is queued; returns the wall time it starts playing."""
        self._queued = np.concatenate([self._queued, audio.astype(np.float32)])
        return self._start_s + (self._sent + len(self._queued) - len(audio)) / RATE_HZ

    async def stream(self) -> None:
        silence = np.zeros(CHUNK_SAMPLES, np.float32)
        while True:
            due_s = self._start_s + self._sent / RATE_HZ
            await asyncio.sleep(max(0.0, due_s - time.monotonic()))
            chunk, self._queued = self._queued[:CHUNK_SAMPLES], self._queued[CHUNK_SAMPLES:]
            if len(chunk) < CHUNK_SAMPLES:
                chunk = np.concatenate([chunk, silence[len(chunk):]])
            await self._ws.send(float32_to_pcm16(chunk))  # type: ignore[attr-defined]
            self._sent += CHUNK_SAMPLES


class _User:
    """One simulated user on one WebSocket session."""

    def __init__(self, index: int, url: str, token: str, questions: list[tuple[str, np.ndarray]],
                 options: LoadOptions, deadline: float, start_talking: asyncio.Event) -> None:
        self.index = index
        self.connected = asyncio.Event()
        self._start_talking = start_talking
        self._url = url
        self._token = token
        self._questions = questions
        self._options = options
        self.deadline = deadline
        self.turns: list[TurnResult] = []
        self.session = SessionResult()
        self._events: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self._speaking = False
        self._finished_turn_id = -1
        """The newest turn this user is done with (answered or given up on): late events
        of such a turn belong to no question asked now."""
        self._last_pts_us: int | None = None
        self._frame_us = 40_000

    async def run(self) -> None:
        import websockets

        ws_url = self._url.replace("http://", "ws://") + f"/v1/sessions/ws?token={self._token}"
        try:
            async with websockets.connect(ws_url, max_size=2**24) as ws:
                await ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": RATE_HZ,
                                          "output": "jpeg", "options": {"seed": self.index}}))
                reader = asyncio.create_task(self._read(ws))
                try:
                    ready = await self._expect("ready", 120.0)
                    self.session.fps = int(ready["media"]["fps"])  # type: ignore[index]
                    self._frame_us = 1_000_000 // self.session.fps
                    self.connected.set()
                    microphone = _Microphone(ws)
                    streaming = asyncio.create_task(microphone.stream())
                    try:
                        await self._start_talking.wait()
                        await asyncio.sleep(self.index * self._options.stagger_s)
                        await self._talk(microphone)
                    finally:
                        streaming.cancel()
                        await asyncio.wait([streaming])
                    await ws.send(json.dumps({"type": "end", "v": 1}))
                finally:
                    reader.cancel()
                    await asyncio.wait([reader])
        except Exception as exc:
            self.session.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.connected.set()  # a user that failed to connect holds nobody up

    async def _read(self, ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            if isinstance(message, bytes):
                self._on_media(message)
            else:
                event = json.loads(message)
                if event.get("type") == "error":
                    self.session.errors.append(str(event.get("message")))
                await self._events.put(event)

    def _on_media(self, data: bytes) -> None:
        kind, pts_us = _MEDIA_HEADER.unpack_from(data)
        if kind != b"V":
            return
        self.session.frames += 1
        second = int(time.monotonic())
        self.session.frames_by_second[second] = self.session.frames_by_second.get(second, 0) + 1
        if self._speaking:
            self.session.speaking_frames += 1
        if self._last_pts_us is not None:
            gap = pts_us - self._last_pts_us
            if gap > 1.5 * self._frame_us:
                self.session.missing_frames += round(gap / self._frame_us) - 1
        self._last_pts_us = pts_us

    async def _expect(self, kind: str, timeout_s: float) -> dict[str, object]:
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self._events.get()
                if event.get("type") == kind:
                    return event
                if kind == "ready" and event.get("type") == "error":
                    if event.get("code") == "overloaded":
                        self.session.refusal = event
                    raise RuntimeError(f"the session was refused: {event.get('message')}")

    async def _talk(self, microphone: _Microphone) -> None:
        turn_number = 0
        while time.monotonic() < self.deadline:
            text, audio = self._questions[(self.index + turn_number) % len(self._questions)]
            turn_number += 1
            # The end of the speech itself, not of the clip's trailing silence.
            speech_end = microphone.say(audio) + _last_voiced_s(audio)
            result = TurnResult(session=self.index, question=text, ttff_ms=None,
                                asked_at_s=speech_end, speech_s=len(audio) / RATE_HZ)
            await asyncio.sleep(max(0.0, speech_end - time.monotonic()))
            await self._collect_turn(result, speech_end)
            self.turns.append(result)
            await asyncio.sleep(self._options.think_s)

    async def _collect_turn(self, result: TurnResult, speech_end: float) -> None:
        """The events of the turn the question just asked starts, until its end.

        A turn given up on (no answer within 60 s) may still end later, interrupted by the
        next question: its events are skipped by turn id, or every later question would be
        paired with the previous turn's end (a soak once reported thousands of empty
        transcripts that way)."""
        speaking_since: float | None = None
        newest_turn_id = self._finished_turn_id
        try:
            async with asyncio.timeout(60.0):
                while True:
                    event = await self._events.get()
                    kind = event.get("type")
                    turn_id = event.get("turn_id")
                    if isinstance(turn_id, int):
                        if turn_id <= self._finished_turn_id:
                            continue
                        newest_turn_id = max(newest_turn_id, turn_id)
                    if kind == "transcript" and event.get("final"):
                        result.transcript = str(event.get("text"))
                    elif kind == "speaking" and speaking_since is None:
                        speaking_since = time.monotonic()
                        result.ttff_ms = (speaking_since - speech_end) * 1000.0
                        self._speaking = True
                    elif kind == "error":
                        result.error = str(event.get("message"))
                        if event.get("code") == "no_speech":
                            return
                    elif kind == "turn_end":
                        result.reply_chars = len(str(event.get("spoken_text", "")))
                        await self._latency_of(result, turn_id)
                        return
        except TimeoutError:
            result.error = result.error or "no answer within 60 s"
        finally:
            self._finished_turn_id = newest_turn_id
            if speaking_since is not None:
                result.speaking_s = time.monotonic() - speaking_since
                self.session.speaking_s += result.speaking_s
            self._speaking = False


    async def _latency_of(self, result: TurnResult, turn_id: object) -> None:
        """The server's trace of the turn: its ``latency`` event follows ``turn_end``."""
        try:
            async with asyncio.timeout(5.0):
                while True:
                    event = await self._events.get()
                    if event.get("type") == "latency" and event.get("turn_id") == turn_id:
                        result.server_latency_ms = dict(event.get("stages_ms", {}))  # type: ignore[arg-type]
                        result.prompt_tokens = event.get("prompt_tokens")  # type: ignore[assignment]
                        result.evaluated_prompt_tokens = event.get(  # type: ignore[assignment]
                            "evaluated_prompt_tokens")
                        result.route = event.get("route")  # type: ignore[assignment]
                        return
        except TimeoutError:
            pass


def _last_voiced_s(audio: np.ndarray) -> float:
    """Seconds into ``audio`` where its last audible sample is (-40 dBFS)."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return (loud[-1] + 1) / RATE_HZ if loud.size else len(audio) / RATE_HZ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def _server(options: LoadOptions, progress: Progress):  # type: ignore[no-untyped-def]
    """A running server: the one given, or a fresh ``talkface serve`` on loopback."""
    if options.url is not None:
        yield options.url, options.api_key, None
        return
    port = _free_port()
    key = "load-test-" + os.urandom(8).hex()
    env = {**os.environ, "TALKFACE_API_KEYS": key,
           # Enough headroom for the load itself: limits are not what is measured here.
           "TALKFACE_SERVER__LIMITS__MAX_SESSIONS": str(max(8, options.sessions + 2)),
           "TALKFACE_SERVER__RATE_LIMIT__REQUESTS_PER_S": "1000",
           "TALKFACE_SERVER__RATE_LIMIT__BURST": "1000",
           "TALKFACE_SERVING__ENGINES": options.engines, **options.server_env}
    with contextlib.ExitStack() as files:
        log = (files.enter_context(options.server_log.open("ab"))
               if options.server_log is not None else subprocess.DEVNULL)
        process = subprocess.Popen(  # noqa: ASYNC220 - spawning is quick; the wait is async
            [sys.executable, "-m", "talkface.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port)],
            env=env, stdout=log, stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, progress, process)
            yield url, key, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def _wait_ready(url: str, progress: Progress,
                      process: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    progress("waiting for the server to load its models")
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} before "
                                   "it was ready (see its log)")
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the server at {url} did not become ready in 5 minutes")


def _process_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _process_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


async def run_load(options: LoadOptions, progress: Progress | None = None) -> LoadResult:
    """Run one load test and return what it measured."""
    import httpx

    say = progress or (lambda _: None)
    questions = await asyncio.to_thread(synthesise_questions, options.questions)
    async with _server(options, say) as (url, key, pid):
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{url}/v1/tokens",
                                         headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()
            token = response.json()["token"]
        start_talking = asyncio.Event()
        users = [_User(i, url, token, questions, options, math.inf, start_talking)
                 for i in range(options.sessions)]
        running = asyncio.gather(*(user.run() for user in users))
        idle_cores = None
        render_job = (BackgroundRender(options.render_job_s) if options.render_job_s > 0
                      else None)
        rendering: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(asyncio.gather(*(u.connected.wait() for u in users)), 120.0)
            if options.idle_s > 0:
                say(f"{options.sessions} users connected, silent for {options.idle_s:g} s")
                await asyncio.sleep(1.0)  # let the first idle frames settle
                idle_before = _process_cpu_s(pid)
                await asyncio.sleep(options.idle_s)
                idle_after = _process_cpu_s(pid)
                if idle_before is not None and idle_after is not None:
                    idle_cores = round((idle_after - idle_before) / options.idle_s, 3)
            cpu_before = _process_cpu_s(pid)
            started = time.monotonic()
            for user in users:
                user.deadline = started + options.duration_s
            say(f"{options.sessions} users talking for {options.duration_s:.0f} s")
            start_talking.set()
            stop_rendering = asyncio.Event()
            if render_job is not None:
                rendering = asyncio.create_task(render_job.run(url, key, stop_rendering))
            await running
            wall_s = time.monotonic() - started
            cpu_after = _process_cpu_s(pid)
            stop_rendering.set()
            if rendering is not None:
                say("waiting for the last render job to finish")
                await asyncio.wait([rendering], timeout=_RENDER_JOB_WAIT_S)
        finally:
            start_talking.set()
            for task in (running, rendering):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.wait([task])
        rss = _process_rss_mb(pid)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return LoadResult(options=options, turns=[t for u in users for t in u.turns],
                      sessions=[u.session for u in users], wall_s=wall_s, server_cpu_s=cpu,
                      server_rss_mb=rss, idle_server_cpu_cores=idle_cores,
                      render_job=render_job)
