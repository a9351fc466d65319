"""Render jobs: accepted at once, rendered in the background, kept across a restart."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.face.lipsync import decode_video, measure_lipsync

from .conftest import OTHER_KEY, RunningServer, serve, server_settings

pytestmark = [pytest.mark.serving, pytest.mark.integration]

LONG_TEXT = (
    "Good evening, and welcome to the news at nine. Tonight the weather stays mild, with a "
    "light breeze from the west. In the city, the new library opened its doors this morning, "
    "and hundreds of readers came to see it. Later in the programme we look at the football, "
    "the markets, and a story about a very clever dog who found his way home after a week."
)
SPOKEN = "Hello, I am reading this recording aloud for the avatar to repeat."


def wait_for(http: httpx.Client, job_id: str, statuses: tuple[str, ...],
             timeout_s: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = http.get(f"/v1/renders/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"render {job_id} stuck at {job}"
        time.sleep(0.05)


def wav_bytes(samples: np.ndarray, rate_hz: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate_hz)
        handle.writeframes(float32_to_pcm16(samples))
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Restarted:
    """The server after a restart, and what the jobs looked like before it."""

    server: RunningServer
    long_id: str
    audio_id: str
    short_id: str
    before: dict[str, str]
    long_when_stopped: dict[str, Any]


@pytest.fixture(scope="module")
def speech_wav(speak: Callable[..., np.ndarray]) -> bytes:
    return wav_bytes(speak("piper", SPOKEN))


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory, speech_wav: bytes) -> Iterator[Restarted]:
    """Three jobs are accepted by a server that is still loading its models; it starts the
    first and is stopped while that one renders. A second server on the same data dir
    takes over."""
    settings = server_settings(tmp_path_factory.mktemp("render-data"))
    with serve(settings, wait_ready=False) as first, first.client() as http:
        long_id = http.post("/v1/renders", json={"text": LONG_TEXT, "seed": 3}).json()["id"]
        audio = http.post("/v1/renders", files={"file": ("reading.wav", speech_wav)},
                          data={"seed": "4"})
        assert audio.status_code == 202, audio.text
        short = http.post("/v1/renders", json={"text": "A short one.", "voice": "alloy"})
        assert short.status_code == 202 and short.headers["Location"].endswith(short.json()["id"])
        ids = (long_id, audio.json()["id"], short.json()["id"])
        before = {job_id: http.get(f"/v1/renders/{job_id}").json()["status"] for job_id in ids}
        long_when_stopped = wait_for(http, long_id, ("running", "done", "failed"))
    with serve(settings) as second, second.client() as http:
        for job_id in ids:
            wait_for(http, job_id, ("done", "failed", "cancelled"))
        yield Restarted(server=second, long_id=ids[0], audio_id=ids[1], short_id=ids[2],
                        before=before, long_when_stopped=long_when_stopped)


@pytest.fixture(scope="module")
def http(restarted: Restarted) -> Iterator[httpx.Client]:
    with restarted.server.client() as client:
        yield client


def test_jobs_accepted_before_a_restart_are_rendered_after_it(restarted: Restarted,
                                                              http: httpx.Client,
                                                              tmp_path: Path) -> None:
    assert restarted.before[restarted.audio_id] == "queued"
    assert restarted.before[restarted.short_id] == "queued"
    assert restarted.long_when_stopped["status"] == "running"
    jobs = {job_id: http.get(f"/v1/renders/{job_id}").json()
            for job_id in (restarted.long_id, restarted.audio_id, restarted.short_id)}
    assert {job["status"] for job in jobs.values()} == {"done"}
    # The job cut short by the stop was rendered again from the start; the others once.
    assert jobs[restarted.long_id]["attempts"] == 2
    assert jobs[restarted.audio_id]["attempts"] == jobs[restarted.short_id]["attempts"] == 1
    long = jobs[restarted.long_id]
    assert long["progress"] == 1.0 and long["duration_s"] > 15
    video = http.get(long["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "long.mp4"
    path.write_bytes(video.content)
    frames, fps, audio, rate = decode_video(path)
    assert len(frames) / fps == pytest.approx(long["duration_s"], abs=0.1)
    assert len(audio) / rate == pytest.approx(long["duration_s"], abs=0.1)


def test_an_uploaded_recording_is_rendered_at_its_length(restarted: Restarted,
                                                         http: httpx.Client,
                                                         speech_wav: bytes) -> None:
    job = http.get(f"/v1/renders/{restarted.audio_id}").json()
    assert job["input"] == "audio"
    with wave.open(io.BytesIO(speech_wav)) as recording:
        recording_s = recording.getnframes() / recording.getframerate()
    assert job["duration_s"] == pytest.approx(recording_s, abs=0.05)


def test_the_avatar_lip_syncs_an_uploaded_recording(server: RunningServer, speech_wav: bytes,
                                                    tmp_path: Path, artifacts_dir: Path) -> None:
    with server.client() as client:
        job = client.post("/v1/renders", files={"file": ("reading.wav", speech_wav)}).json()
        job = wait_for(client, job["id"], ("done", "failed"))
        assert job["status"] == "done", job
        path = tmp_path / "lipsync.mp4"
        path.write_bytes(client.get(job["video_url"]).content)
    (artifacts_dir / "render_lipsync.mp4").write_bytes(path.read_bytes())
    report = measure_lipsync(path)
    assert report.frames_without_face == 0
    assert abs(report.offset_ms) <= 40.0, report
    assert report.correlation >= 0.5, report


def test_status_and_progress_as_a_job_renders(http: httpx.Client) -> None:
    job = http.post("/v1/renders", json={"text": LONG_TEXT[:260]}).json()
    assert job["status"] == "queued" and job["progress"] == 0 and job["video_url"] is None
    seen = [job]
    while seen[-1]["status"] not in ("done", "failed"):
        time.sleep(0.05)
        seen.append(http.get(f"/v1/renders/{job['id']}").json())
    statuses = [s["status"] for s in seen]
    assert statuses[-1] == "done"
    assert statuses == sorted(statuses, key=["queued", "running", "done"].index)
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress), progress  # it moved while it rendered
    done = seen[-1]
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


def test_a_video_is_409_until_done_and_jobs_are_private(restarted: Restarted,
                                                        http: httpx.Client) -> None:
    job = http.post("/v1/renders", json={"text": LONG_TEXT[:200]}).json()
    early = http.get(f"/v1/renders/{job['id']}/video")
    assert early.status_code == 409
    assert "when GET /v1/renders/{id} says status 'done'" in early.json()["error"]["message"]
    with restarted.server.client(OTHER_KEY) as other:
        for response in (other.get(f"/v1/renders/{job['id']}"),
                         other.get(f"/v1/renders/{job['id']}/video"),
                         other.delete(f"/v1/renders/{job['id']}")):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "render_not_found"
        assert all(j["id"] != job["id"] for j in other.get("/v1/renders").json()["data"])
    assert job["id"] in [j["id"] for j in http.get("/v1/renders").json()["data"]]
    wait_for(http, job["id"], ("done",))
    assert http.get(f"/v1/renders/{job['id']}/video").status_code == 200
    assert http.get("/v1/renders/r_unknown").status_code == 404


def test_cancel_a_running_job_then_delete_it(restarted: Restarted, http: httpx.Client) -> None:
    job = http.post("/v1/renders", json={"text": LONG_TEXT}).json()
    wait_for(http, job["id"], ("running",))
    cancelled = http.delete(f"/v1/renders/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert http.get(f"/v1/renders/{job['id']}").json()["status"] == "cancelled"
    video = http.get(f"/v1/renders/{job['id']}/video")
    assert video.status_code == 409 and "cancelled" in video.json()["error"]["message"]
    assert http.delete(f"/v1/renders/{job['id']}").status_code == 204
    assert http.get(f"/v1/renders/{job['id']}").status_code == 404
    data_dir = restarted.server.settings.server.data_dir
    assert data_dir is not None
    assert not list(data_dir.glob(f"**/*{job['id']}*"))  # no files left behind
    # The queue goes on with the next job.
    after = http.post("/v1/renders", json={"text": "Still rendering."}).json()
    assert wait_for(http, after["id"], ("done", "failed"))["status"] == "done"


def test_a_job_that_cannot_render_fails_and_says_why(restarted: Restarted, http: httpx.Client,
                                                     speech_wav: bytes) -> None:
    blocker = http.post("/v1/renders", json={"text": LONG_TEXT}).json()
    wait_for(http, blocker["id"], ("running",))
    doomed = http.post("/v1/renders", files={"file": ("x.wav", speech_wav)}).json()
    data_dir = restarted.server.settings.server.data_dir
    assert data_dir is not None
    for path in (data_dir / "inputs").glob(f"{doomed['id']}.*"):
        path.unlink()  # the upload is lost from disk before the job gets to it
    http.delete(f"/v1/renders/{blocker['id']}")
    failed = wait_for(http, doomed["id"], ("failed", "done"))
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "bad_input" and "does not exist" in failed["error"]["message"]
    video = http.get(f"/v1/renders/{doomed['id']}/video")
    assert video.status_code == 409 and "failed" in video.json()["error"]["message"]


def test_pending_jobs_are_bounded(restarted: Restarted, http: httpx.Client) -> None:
    limit = restarted.server.settings.server.limits.max_pending_renders
    accepted = [http.post("/v1/renders", json={"text": LONG_TEXT}) for _ in range(limit)]
    try:
        assert [r.status_code for r in accepted] == [202] * limit
        refused = http.post("/v1/renders", json={"text": "One too many."})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "limits.max_pending_renders" in refused.json()["error"]["message"]
    finally:
        for response in accepted:
            http.delete(f"/v1/renders/{response.json()['id']}")
    assert http.post("/v1/renders", json={"text": "Room again."}).status_code == 202


def test_bad_render_requests_are_refused_before_they_queue(http: httpx.Client,
                                                          speech_wav: bytes) -> None:
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        return response.json()["error"]["message"]

    assert "not both" in error(http.post("/v1/renders", files={"file": ("a.wav", speech_wav)},
                                         data={"text": "Hi"}), 400)
    assert "nothing to render" in error(http.post("/v1/renders", files={"seed": (None, "1")}), 400)
    assert "send the file as 'file'" in error(http.post("/v1/renders", files={"other": ("a", b"")}),
                                              400)
    unknown_voice = http.post("/v1/renders", json={"text": "Hi", "voice": "bob"})
    assert "unknown voice" in error(unknown_voice, 400)
    french = http.post("/v1/renders", json={"text": "Bonjour", "language": "fr"})
    assert "language 'fr' is not supported; talkface speaks en, zh" in error(french, 400)
    assert "nothing to say" in error(http.post("/v1/renders", json={"text": "[happy]"}), 400)
    assert "POST /v1/avatars" in error(http.post("/v1/renders", json={"text": "Hi",
                                                                      "avatar_id": "abc"}), 404)
    assert "'song.mp3' is not an audio file" in error(
        http.post("/v1/renders", files={"file": ("song.mp3", b"\x00" * 5000)}), 400)
    long = wav_bytes(np.zeros(16_000 * 12, np.float32))
    assert "at most" in error(http.post("/v1/renders", files={"file": ("long.wav", long)}), 413)
    text_form = http.post("/v1/renders", files={"text": (None, "Sent as a form.")})
    assert text_form.status_code == 202 and text_form.json()["input"] == "text"
