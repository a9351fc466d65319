"""An overload run: users join a real server one by one until it is past what it can
serve, stay a while, then leave one by one; the degradation ladder is watched all along.

Each user talks as in ``talkface bench load`` (spoken questions, real time). A user the
server refuses waits the ``Retry-After`` it was given and tries again until its time is
up. ``/metrics`` is read every second: the ladder's level, the pressure and its signals,
the live sessions. While the ladder refuses sessions, one WebRTC offer checks that the
HTTP answer is a 503 with ``Retry-After`` and ``retryable: true``.

What it shows: the ladder steps down as users join and back up as they leave, every step
is in ``/metrics``, and no admitted session's video drops below 20 fps.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from talkface.bench.load import (
    LoadOptions,
    Progress,
    SessionResult,
    TurnResult,
    _server,
    _User,
    synthesise_questions,
)
from talkface.bench.scrape import metric_samples

__all__ = ["OverloadOptions", "OverloadRun", "run_overload"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadOptions:
    """One overload run.

    Attributes:
        max_users: how many users join, one every ``join_every_s``.
        join_every_s: between two users joining.
        hold_s: once the last one has joined, all stay this long.
        leave_every_s: then one leaves every this many seconds (the first to join first).
        recover_s: after the last has left, the longest the run waits for the ladder to
            be back at level 0.
        think_s: a user's pause between an answer and its next question.
        url: a running server (default: start one on loopback).
        api_key: its API key (with ``url``).
        server_log: where a started server's output goes.
    """

    max_users: int = 6
    join_every_s: float = 20.0
    hold_s: float = 60.0
    leave_every_s: float = 10.0
    recover_s: float = 180.0
    think_s: float = 1.0
    url: str | None = None
    api_key: str | None = None
    server_log: Path | None = None

    @property
    def duration_s(self) -> float:
        """From the first user joining to the last one leaving."""
        return ((self.max_users - 1) * (self.join_every_s + self.leave_every_s)
                + self.hold_s)


@dataclass(slots=True)
class UserRecord:
    """One user's life in the run: when it joined and left, what it got."""

    index: int
    join_at_s: float
    leave_at_s: float
    refusals: list[dict[str, Any]] = field(default_factory=list)
    admitted_at_s: float | None = None
    session: SessionResult | None = None
    turns: list[TurnResult] = field(default_factory=list)


@dataclass(slots=True)
class OverloadRun:
    """Everything an overload run saw (times in seconds from its start)."""

    options: OverloadOptions
    users: list[UserRecord]
    samples: list[dict[str, Any]] = field(default_factory=list)
    http_refusal: dict[str, Any] | None = None
    recovered_at_s: float | None = None
    started_s: float = 0.0
    """When the first user joined (``time.monotonic()``)."""

    def level_changes(self) -> list[dict[str, Any]]:
        """The ladder's level each time it changed: time, level, pressure, sessions."""
        changes, last = [], 0.0
        for sample in self.samples:
            if sample.get("level") is not None and sample["level"] != last:
                last = sample["level"]
                changes.append({k: sample.get(k) for k in ("t_s", "level", "pressure",
                                                           "sessions", "signals")})
        return changes

    def summary(self) -> dict[str, Any]:
        """The figures the run is judged by."""
        levels = [s["level"] for s in self.samples if s.get("level") is not None]
        admitted = [u for u in self.users if u.session is not None and u.session.fps]
        min_fps = [u.session.min_fps() for u in admitted if u.session is not None]
        ttff = [t.ttff_ms for u in self.users for t in u.turns if t.ttff_ms is not None]
        refusals = [r for u in self.users for r in u.refusals]
        steps = self.samples[-1].get("steps", {}) if self.samples else {}
        return {
            "users": len(self.users),
            "admitted": len(admitted),
            "refusals": len(refusals),
            "refusals_retryable": all(r.get("retryable") is True for r in refusals),
            "max_level": max(levels, default=0),
            "final_level": levels[-1] if levels else None,
            "recovered_after_last_left_s": self.recovered_at_s,
            "level_changes": [(c["t_s"], c["level"]) for c in self.level_changes()],
            "steps_total": steps,
            "session_fps": sorted({u.session.fps for u in admitted if u.session}),
            "min_fps_5s": min((f for f in min_fps if f is not None), default=None),
            "missing_frames": sum(u.session.missing_frames for u in admitted if u.session),
            "turns": len(ttff),
            "ttff_p50_ms": round(statistics.median(ttff)) if ttff else None,
            "http_refusal": self.http_refusal,
            "ttff_p50_ms_by_level": self._ttff_by_level(),
            "errors": sum(len(u.session.errors) for u in admitted if u.session),
        }

    def _ttff_by_level(self) -> dict[int, int]:
        """Median first frame of the turns asked while the ladder was at each level."""
        by_level: dict[int, list[float]] = {}
        for user in self.users:
            for turn in user.turns:
                if turn.ttff_ms is not None:
                    level = int(level_at(self, turn.asked_at_s - self.started_s))
                    by_level.setdefault(level, []).append(turn.ttff_ms)
        return {level: round(statistics.median(v)) for level, v in sorted(by_level.items())}


async def _scrape(client: httpx.AsyncClient, url: str, key: str) -> dict[str, Any]:
    """The ladder's figures from ``/metrics``."""
    found: dict[str, Any] = {"signals": {}, "steps": {}}
    for sample in await metric_samples(client, url, key):
        labels = sample.labels
        if sample.name == "talkface_degradation_level":
            found["level"] = sample.value
        elif sample.name == "talkface_pressure":
            found["pressure"] = round(sample.value, 3)
        elif sample.name == "talkface_pressure_signal":
            found["signals"][labels["signal"]] = round(sample.value, 3)
        elif (sample.name == "talkface_degradation_step_taken"
              and labels["step"] == "refuse_sessions"):
            found["refusing"] = bool(sample.value)
        elif sample.name == "talkface_active_sessions":
            found["sessions"] = sample.value
        elif sample.name == "talkface_degradation_steps_total" and sample.value:
            found["steps"][f"{labels['step']}:{labels['direction']}"] = sample.value
    return found


async def _probe_http_refusal(client: httpx.AsyncClient, url: str, token: str
                              ) -> dict[str, Any]:
    """What a WebRTC offer gets while sessions are refused (refused before any work)."""
    response = await client.post(f"{url}/v1/sessions/webrtc",
                                 # Well-formed enough to reach admission, which
                                 # comes before the offer is parsed.
                                 json={"type": "offer", "sdp": "v=0 " + "x" * 20},
                                 headers={"Authorization": f"Bearer {token}"})
    body = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return {"status": response.status_code,
            "retry_after": response.headers.get("Retry-After"),
            "retryable": error.get("retryable"), "code": error.get("code")}


async def run_overload(options: OverloadOptions, progress: Progress | None = None
                       ) -> OverloadRun:
    """Run one overload test (see the module docstring) and return what it saw."""
    say = progress or (lambda _: None)
    questions = await asyncio.to_thread(synthesise_questions)
    load = LoadOptions(sessions=options.max_users, think_s=options.think_s, url=options.url,
                       api_key=options.api_key, stagger_s=0.0, idle_s=0.0,
                       server_log=options.server_log)
    async with _server(load, say) as (url, key, _pid), \
            httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
        response = await client.post(f"{url}/v1/tokens",
                                     headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        token = response.json()["token"]
        started = time.monotonic()
        all_joined = started + (options.max_users - 1) * options.join_every_s
        users = [UserRecord(index=i, join_at_s=i * options.join_every_s,
                            leave_at_s=all_joined - started + options.hold_s
                            + i * options.leave_every_s)
                 for i in range(options.max_users)]
        run = OverloadRun(options=options, users=users, started_s=started)
        talking = asyncio.Event()
        talking.set()

        async def live(user: UserRecord) -> None:
            await asyncio.sleep(user.join_at_s)
            leave_at = started + user.leave_at_s
            while time.monotonic() < leave_at:
                client_user = _User(user.index, url, token, questions, load, leave_at, talking)
                await client_user.run()
                if client_user.session.refusal is None:
                    seconds = client_user.session.frames_by_second
                    if seconds:
                        user.admitted_at_s = round(min(seconds) - started, 1)
                    user.session, user.turns = client_user.session, client_user.turns
                    return
                refusal = dict(client_user.session.refusal,
                               t_s=round(time.monotonic() - started, 1))
                user.refusals.append(refusal)
                say(f"user {user.index} refused, retries in {refusal.get('retry_after_s')} s")
                wait_s = float(refusal.get("retry_after_s") or 5.0)  # type: ignore[arg-type]
                await asyncio.sleep(max(0.0, min(wait_s, leave_at - time.monotonic())))

        async def watch(stop: asyncio.Event) -> None:
            while not stop.is_set():
                t_s = round(time.monotonic() - started, 1)
                try:
                    sample = await _scrape(client, url, key)
                except httpx.HTTPError as exc:
                    sample = {"error": str(exc)}
                sample["t_s"] = t_s
                run.samples.append(sample)
                if sample.get("refusing") and run.http_refusal is None:
                    run.http_refusal = await _probe_http_refusal(client, url, token)
                if sample.get("level") is not None:
                    say(f"[{t_s:6.0f} s] level {sample['level']:.0f}  pressure "
                        f"{sample.get('pressure', 0):.2f}  sessions {sample.get('sessions')}")
                with_timeout = asyncio.ensure_future(stop.wait())
                await asyncio.wait([with_timeout], timeout=1.0)
                with_timeout.cancel()

        stop_watching = asyncio.Event()
        watcher = asyncio.create_task(watch(stop_watching))
        try:
            say(f"{options.max_users} users join {options.join_every_s:g} s apart, stay "
                f"{options.hold_s:g} s, leave {options.leave_every_s:g} s apart")
            await asyncio.gather(*(live(user) for user in users))
            left = time.monotonic()
            say("everyone has left: waiting for the ladder to get back to level 0")
            deadline = left + options.recover_s
            while time.monotonic() < deadline:
                last = next((s for s in reversed(run.samples) if "level" in s), None)
                if last is not None and last["level"] == 0 and last["t_s"] > left - started:
                    run.recovered_at_s = round(time.monotonic() - left, 1)
                    break
                await asyncio.sleep(1.0)
        finally:
            stop_watching.set()
            await asyncio.wait([watcher], timeout=10)
            if not watcher.done():
                watcher.cancel()
    if run.recovered_at_s is None:
        say(f"the ladder was not back at level 0 within {options.recover_s:g} s")
    return run


def level_at(run: OverloadRun, t_s: float) -> float:
    """The ladder's level at ``t_s`` (the last sample before it)."""
    level = 0.0
    for sample in run.samples:
        if sample["t_s"] > t_s:
            break
        level = sample.get("level", level)
    return level
