"""A render job run to its end over HTTP, for the benchmarks that run one beside live users.

``talkface bench load --render-job-s`` renders long ones, one after another, while live
users talk (does a render job slow a conversation?); the soak sends short ones as side
traffic. Both go
through :func:`render_to_end`.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

WORDS_PER_S = 2.6
"""How fast the default English voice speaks :func:`story_text`: words of text per second
of video (422 words, four-digit story numbers said in each sentence, made ~165 s)."""

_STORY = (
    "Our store has been part of this street for more than forty years.",
    "It began as a small shop that sold bread, milk and the morning paper.",
    "Today it has a bakery, a cafe and a corner where children can read.",
    "Every morning the bakers start work long before the sun comes up.",
    "The first customers are usually the people who drive the city buses.",
    "They like their coffee strong and their rolls still warm from the oven.",
    "Later in the day, students come in to study at the long wooden tables.",
    "On weekends there is music in the evening and the cafe stays open late.",
    "We try to buy our fruit and vegetables from farms close to the town.",
    "If you have an idea for something we should sell, please tell us.",
)


def story_text(seconds: float, number: int = 1) -> str:
    """Plain English sentences that take about ``seconds`` to speak. Each sentence names
    ``number``, so that stories of different numbers share no sentence (nothing comes
    from the TTS or clip caches)."""
    words_wanted = seconds * WORDS_PER_S
    sentences: list[str] = []
    words = 0
    while words < words_wanted:
        line = _STORY[len(sentences) % len(_STORY)]
        sentence = f"In story {number}, part {len(sentences) + 1}: {line[0].lower()}{line[1:]}"
        sentences.append(sentence)
        words += len(sentence.split())
    return " ".join(sentences)


def expect_status(response: httpx.Response, status: int) -> httpx.Response:
    """``response``, if its status is ``status``.

    Raises:
        RuntimeError: it is not; the message names the request and the reply.
    """
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"HTTP {response.status_code} {response.text[:200]!r}")
    return response


async def render_to_end(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                        body: dict[str, Any], *, poll_s: float = 1.0,
                        timeout_s: float = 900.0) -> dict[str, Any]:
    """Post a render job, poll it until it ends (at most ``timeout_s``), download its
    video and delete it; the job's last status document.

    Raises:
        RuntimeError: a request got an unexpected status, the job did not end "done"
            within ``timeout_s``, or its video was empty.
    """
    renders = f"{url}/v1/renders"
    job: dict[str, Any] = expect_status(await client.post(renders, headers=headers, json=body),
                                 202).json()
    deadline_s = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline_s:
            raise RuntimeError(f"render {job['id']} still {job['status']} after {timeout_s:g} s")
        await asyncio.sleep(poll_s)
        job = expect_status(await client.get(f"{renders}/{job['id']}", headers=headers), 200).json()
    if job["status"] != "done":
        raise RuntimeError(f"render {job['id']} ended {job['status']}: {job.get('error')}")
    video = expect_status(await client.get(f"{renders}/{job['id']}/video", headers=headers), 200)
    if not video.content:
        raise RuntimeError(f"render {job['id']}: an empty video")
    expect_status(await client.delete(f"{renders}/{job['id']}", headers=headers), 204)
    return job


@dataclass(slots=True)
class RenderRun:
    """One render job of a :class:`BackgroundRender`, in ``time.monotonic()`` seconds."""

    started_s: float
    ended_s: float | None = None
    video_s: float | None = None
    error: str | None = None


@dataclass(slots=True)
class BackgroundRender:
    """Render jobs of about ``seconds`` of video each, one after another, beside the live
    users until they are done: when each ran and how it ended."""

    seconds: float
    runs: list[RenderRun] = field(default_factory=list)
    first_story: int = field(default_factory=lambda: secrets.randbelow(9000) + 1000)
    """The first job's story number; random, so that no earlier run's cached speech or
    clips serve this run's jobs."""

    async def run(self, url: str, api_key: str, stop: asyncio.Event) -> None:
        """Render :func:`story_text` of ``seconds``, again and again until ``stop`` is set;
        the job under way then runs to its end. Errors are kept, not raised: the live
        users' measurements stand either way."""
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(trust_env=False, timeout=60.0) as client:
            while not stop.is_set():
                run = RenderRun(started_s=time.monotonic())
                self.runs.append(run)
                try:
                    # Each its own text: rendered, not served from any cache.
                    job = await render_to_end(client, url, headers, {
                        "text": story_text(self.seconds, self.first_story + len(self.runs))})
                    run.video_s = job.get("duration_s")
                except asyncio.CancelledError:
                    run.error = "the run ended before the job did"
                    raise
                except Exception as exc:
                    run.error = f"{type(exc).__name__}: {exc}"
                    return
                finally:
                    run.ended_s = time.monotonic()

    def covers(self, at_s: float) -> bool:
        """Whether a job was under way at ``at_s``."""
        return any(run.started_s <= at_s and (run.ended_s is None or at_s <= run.ended_s)
                   for run in self.runs)

    def summary(self) -> dict[str, object]:
        """The jobs as the load test reports them."""
        done = [r for r in self.runs if r.error is None and r.video_s is not None]
        walls = [r.ended_s - r.started_s for r in done if r.ended_s is not None]
        return {"asked_video_s": self.seconds, "jobs": len(self.runs), "finished": len(done),
                "video_s_each": [round(r.video_s or 0.0, 1) for r in done],
                "wall_s_median": round(statistics.median(walls), 1) if walls else None,
                "errors": [r.error for r in self.runs if r.error is not None]}
