"""Render jobs go through the caches as `talkface say` does: a warmed text job is copied
from the video cache, or played from the clip cache, and says so in its record.

Fakes stand in for the voice and the animator; no HTTP (the route only stores the spec).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from talkface.cache import CLIP_HIT_MARK
from talkface.cache.warm import WarmOptions, warm_phrases
from talkface.config import Settings
from talkface.engines import ModelThread
from talkface.runtime import Runtime
from talkface.services.jobs import RenderQueue
from talkface.services.render import RenderedVideo, RenderSpec, render_job
from talkface.services.store import Store
from talkface.testing import (
    FakeAnimator,
    FakeTTS,
    fake_settings,
    register_fakes,
)

pytestmark = pytest.mark.unit

PHRASE = "Thank you for waiting. It will not be long."


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    register_fakes(monkeypatch.setitem)


def settings_for(cache_dir: Path, *, enabled: bool = True) -> Settings:
    return fake_settings(cache={"enabled": enabled, "dir": cache_dir})


def engine_calls(runtime: Runtime) -> tuple[int, int]:
    tts, animator = runtime.backends.get("tts:fake"), runtime.backends.get("animator")
    assert tts is None or isinstance(tts, FakeTTS)
    assert animator is None or isinstance(animator, FakeAnimator)
    return (0 if tts is None else len(tts.batches),
            0 if animator is None else len(animator.requests))


async def render(runtime: Runtime, spec: RenderSpec, output: Path) -> RenderedVideo:
    encoder = ModelThread("test-encoder")
    try:
        return await render_job(runtime, spec, output, input_path=None, encoder=encoder,
                                on_progress=lambda fraction: None)
    finally:
        encoder.shutdown()


async def warm(cache_dir: Path) -> None:
    async with Runtime(settings_for(cache_dir)) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())


SPEC = RenderSpec(kind="text", text=PHRASE, language="en")  # no seed: the clips' seed


async def test_a_warmed_text_job_is_copied_from_the_video_cache(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    await warm(cache_dir)
    async with Runtime(settings_for(cache_dir)) as runtime:
        cached = await render(runtime, SPEC, tmp_path / "cached.mp4")
        assert runtime.backends == {}  # not a model loaded
    async with Runtime(settings_for(cache_dir, enabled=False)) as fresh_runtime:
        fresh = await render(fresh_runtime, SPEC, tmp_path / "fresh.mp4")
        assert engine_calls(fresh_runtime) != (0, 0)
    assert (cached.cache, fresh.cache) == ("video", None)
    assert cached.duration_s == fresh.duration_s > 0.5
    assert (tmp_path / "cached.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()


async def test_a_warmed_text_job_plays_from_the_clip_cache_without_its_video(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache"
    await warm(cache_dir)
    for entry in (cache_dir / "videos").glob("*.entry"):
        entry.unlink()
    async with Runtime(settings_for(cache_dir)) as runtime:
        played = await render(runtime, SPEC, tmp_path / "played.mp4")
        assert engine_calls(runtime) == (0, 0)  # no TTS, no animator work
    assert played.cache == "clip"
    assert played.trace is not None and CLIP_HIT_MARK in played.trace.as_dict()
    async with Runtime(settings_for(cache_dir, enabled=False)) as fresh_runtime:
        await render(fresh_runtime, SPEC, tmp_path / "fresh.mp4")
    assert (tmp_path / "played.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()


async def test_a_job_with_its_own_seed_renders_with_it(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    await warm(cache_dir)
    async with Runtime(settings_for(cache_dir)) as runtime:
        seeded = await render(runtime, RenderSpec(kind="text", text=PHRASE, seed=7),
                              tmp_path / "seeded.mp4")
        assert engine_calls(runtime)[1] > 0  # frames drawn with seed 7
    assert seeded.cache is None


def test_jobs_stored_before_the_seed_could_be_left_out_still_load() -> None:
    assert RenderSpec.from_dict({"kind": "text", "text": "hi", "seed": 12}).seed == 12
    assert RenderSpec.from_dict({"kind": "text", "text": "hi"}).seed is None


class Host:
    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.runtime = runtime
        self.ready = True
        self.failed: str | None = None


async def test_the_job_record_says_the_cache_served_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    cache_dir = tmp_path / "cache"
    await warm(cache_dir)
    store = Store(tmp_path / "data")
    async with Runtime(settings_for(cache_dir)) as runtime:
        queue = RenderQueue(Host(runtime), store)
        job = await queue.submit("key", SPEC)
        with caplog.at_level(logging.INFO, logger="talkface.services.jobs"):
            running = asyncio.create_task(queue.run())
            try:
                async with asyncio.timeout(30):
                    while (await queue.get(job.id, "key")).status != "done":
                        await asyncio.sleep(0.01)
            finally:
                running.cancel()
                await asyncio.wait([running])
    assert f"event=render_done job={job.id}" in caplog.text
    assert "cache=video" in caplog.text
    assert store.video_path(job.id).read_bytes()[4:8] == b"ftyp"
