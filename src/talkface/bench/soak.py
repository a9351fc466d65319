"""A soak run: ``talkface bench load``'s users plus HTTP side traffic, the server sampled.

``bench/soak.py`` is the command; this module runs one soak and keeps what it saw: every
``interval_s``, the server process's resident memory, open files and threads (its child
processes apart) from ``/proc``, and its engine queue depths, live sessions, pending
renders and error responses by code from ``/metrics``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import httpx

from talkface.bench.load import (
    LoadOptions,
    Progress,
    _process_cpu_s,
    _server,
    _User,
    synthesise_questions,
)
from talkface.bench.render_job import expect_status, render_to_end
from talkface.bench.scrape import metric_samples

SIDE_KINDS = ("speech", "chat", "render")
_SIDE_TEXTS = ("Thank you for calling, how can I help you today?",
               "The store opens at nine and closes at six.",
               "Please hold on while I look that up for you.")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SoakOptions:
    """One soak run.

    Attributes:
        load: the users and the server (``load.duration_s`` is the soak's length).
        interval_s: time between samples.
        side_period_s: each kind of side request (speech, chat, render) is sent this often.
        pid: the process of ``load.url``, to sample (a started server's is known).
    """

    load: LoadOptions
    interval_s: float = 10.0
    side_period_s: float = 25.0
    pid: int | None = None


@dataclasses.dataclass(slots=True)
class SideTraffic:
    """Requests of one kind sent beside the live sessions, and how many failed."""

    sent: int = 0
    failed: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)  # the first few


def process_stats(pid: int) -> dict[str, Any] | None:
    """Resident memory, open files and threads of one process; None once it is gone."""
    try:
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return {"pid": pid, "name": status["Name"].strip(),
                "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
                "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(status["Threads"])}
    except (OSError, KeyError, ValueError):  # gone, or a zombie (which has no VmRSS)
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: model servers it started, an encoder running now."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


async def scrape_metrics(client: httpx.AsyncClient, url: str, key: str) -> dict[str, Any]:
    """Queue depths, live sessions, pending renders and errors by code from ``/metrics``."""
    found: dict[str, Any] = {"queue_depth": {}, "errors_by_code": {}}
    for sample in await metric_samples(client, url, key):
        if sample.name == "talkface_engine_queue_depth":
            found["queue_depth"][sample.labels["engine"]] = sample.value
        elif sample.name == "talkface_errors_total":
            found["errors_by_code"][sample.labels["code"]] = sample.value
        elif sample.name in ("talkface_active_sessions", "talkface_pending_renders"):
            found[sample.name.removeprefix("talkface_")] = sample.value
        elif sample.name == "talkface_llm_saved_state_bytes":
            found["llm_saved_state_mb"] = round(sample.value / 2**20, 1)
    return found


class Soak:
    """One soak against a running server: its users, side traffic and samples."""

    def __init__(self, options: SoakOptions, client: httpx.AsyncClient, url: str, key: str,
                 pid: int | None, users: list[_User], progress: Progress) -> None:
        self.options = options
        self.users = users
        self.side = {kind: SideTraffic() for kind in SIDE_KINDS}
        self.samples: list[dict[str, Any]] = []
        self.scrape_failures: list[str] = []
        self.started_s = time.monotonic()
        self._client, self._url, self._key, self._pid = client, url, key, pid
        self._auth = {"Authorization": f"Bearer {key}"}
        self._progress = progress
        # Caches outlive a server (they are on disk): numbers new to this run miss them.
        self._first_number = int.from_bytes(os.urandom(2), "big") * 1000

    def errors(self) -> int:
        """Session errors, failed turns, failed side requests and failed scrapes so far."""
        sessions = sum(len(u.session.errors) + sum(1 for t in u.turns if t.error)
                       for u in self.users)
        return sessions + sum(s.failed for s in self.side.values()) + len(self.scrape_failures)

    async def sample(self) -> None:
        """One sample of the server process, its children and its metrics."""
        elapsed_s = time.monotonic() - self.started_s
        pid = self._pid
        server = process_stats(pid) if pid is not None else None
        children = [s for p in (descendants(pid) if pid is not None else [])
                    if (s := process_stats(p)) is not None]
        try:
            metrics = await scrape_metrics(self._client, self._url, self._key)
        except (httpx.HTTPError, ValueError) as exc:
            self.scrape_failures.append(f"{elapsed_s:.0f} s: {type(exc).__name__}: {exc}")
            metrics = {}
        sample = {"elapsed_s": round(elapsed_s, 1),
                  **(server or {"rss_mb": None, "fds": None, "threads": None}),
                  "cpu_s": _process_cpu_s(pid), "children": children,
                  "children_rss_mb": round(sum(c["rss_mb"] for c in children), 1),
                  "turns": sum(len(u.turns) for u in self.users), "errors": self.errors(),
                  **metrics}
        self.samples.append(sample)
        queued = sum(sample.get("queue_depth", {}).values())
        self._progress(
            f"[{elapsed_s / 60:5.1f} min] rss {sample['rss_mb']} MB  fds {sample['fds']}  "
            f"threads {sample['threads']}  children {len(children)} "
            f"({sample['children_rss_mb']} MB)  queued {queued:g}  turns {sample['turns']}  "
            f"errors {sample['errors']}")

    async def sample_until(self, stop: asyncio.Event) -> None:
        """A sample every ``interval_s`` until ``stop``, then one of the end state."""
        while not stop.is_set():
            await self.sample()
            next_s = self.started_s + len(self.samples) * self.options.interval_s
            try:
                async with asyncio.timeout(max(0.0, next_s - time.monotonic())):
                    await stop.wait()
            except TimeoutError:
                pass
        await self.sample()

    async def side_traffic(self, kind: str, offset_s: float, deadline_s: float) -> None:
        """``kind`` requests, one every ``side_period_s`` from ``offset_s``, until
        ``deadline_s``; the speech texts differ, so that the TTS cache does not answer."""
        call = {"speech": self._speech, "chat": self._chat, "render": self._render}[kind]
        stats = self.side[kind]
        await asyncio.sleep(offset_s)
        while (sent_s := time.monotonic()) < deadline_s:
            stats.sent += 1
            try:
                async with asyncio.timeout(300.0):
                    await call(self._first_number + stats.sent)
            except Exception as exc:  # every failure is counted; none stops the soak
                stats.failed += 1
                if len(stats.failures) < 20:
                    stats.failures.append(f"{time.monotonic() - self.started_s:.0f} s: "
                                          f"{type(exc).__name__}: {exc}")
            wait_s = sent_s + self.options.side_period_s - time.monotonic()
            await asyncio.sleep(max(0.0, min(wait_s, deadline_s - time.monotonic())))

    async def _speech(self, number: int) -> None:
        text = f"{_SIDE_TEXTS[number % len(_SIDE_TEXTS)]} Your ticket is number {number}."
        response = expect_status(await self._client.post(
            f"{self._url}/v1/audio/speech", headers=self._auth,
            json={"input": text, "response_format": "wav"}), 200)
        if len(response.content) < 1000:
            raise RuntimeError(f"speech: only {len(response.content)} bytes of audio")

    async def _chat(self, number: int) -> None:
        text = _SIDE_TEXTS[number % len(_SIDE_TEXTS)]
        response = expect_status(await self._client.post(
            f"{self._url}/v1/chat/completions", headers=self._auth,
            json={"model": "soak", "max_tokens": 32,
                  "messages": [{"role": "user", "content": f"Reply briefly: {text}"}]}), 200)
        if not response.json()["choices"][0]["message"]["content"]:
            raise RuntimeError("chat: an empty reply")

    async def _render(self, number: int) -> None:
        """A short text render: queued, polled to its end, downloaded, deleted. Each one
        differs (its seed), so that it is rendered and not served from the video cache."""
        await render_to_end(self._client, self._url, self._auth,
                            {"text": _SIDE_TEXTS[number % len(_SIDE_TEXTS)], "seed": number})


async def run_soak(options: SoakOptions, progress: Progress) -> Soak:
    """Start the server (or use ``load.url``), run users, side traffic and sampling until
    ``load.duration_s`` is up and every user's turn has ended; the finished soak."""
    load = options.load
    questions = await asyncio.to_thread(synthesise_questions)
    async with _server(load, progress) as (url, key, pid), \
            httpx.AsyncClient(trust_env=False, timeout=120.0) as client:
        response = await client.post(f"{url}/v1/tokens",
                                     headers={"Authorization": f"Bearer {key}"})
        token = response.raise_for_status().json()["token"]
        start_talking = asyncio.Event()
        users = [_User(i, url, token, questions, load, math.inf, start_talking)
                 for i in range(load.sessions)]
        running = asyncio.gather(*(user.run() for user in users))
        try:
            await asyncio.wait_for(asyncio.gather(*(u.connected.wait() for u in users)), 120.0)
            soak = Soak(options, client, url, key, pid or options.pid, users, progress)
            deadline_s = soak.started_s + load.duration_s
            for user in users:
                user.deadline = deadline_s
            progress(f"{load.sessions} users talking, side traffic every "
                     f"{options.side_period_s:g} s, for {load.duration_s / 60:g} min")
            start_talking.set()
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(soak.sample_until(stop))
                try:  # side requests start a third of a period apart: not all at once
                    await asyncio.gather(running, *(
                        soak.side_traffic(kind, i * options.side_period_s / 3, deadline_s)
                        for i, kind in enumerate(SIDE_KINDS)))
                finally:
                    stop.set()
        finally:
            start_talking.set()
            if not running.done():
                running.cancel()
                await asyncio.wait([running])
    return soak
