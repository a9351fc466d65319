"""Warmed phrases play from the clip cache; sentences spoken before skip the TTS engine.

Fakes count the engine calls here; tests/cache/test_cache_real.py does the same with
the real voice and animator, whose frames depend on the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkface.cache import open_caches
from talkface.cache.warm import WarmOptions, warm_phrases
from talkface.messages import EndOfTurn, Message, SpeechAudio, VideoFrame
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
from talkface.testing import (
    FakeAnimator,
    FakeTTS,
    fake_settings,
    register_fakes,
)

pytestmark = pytest.mark.unit

PHRASE = "Hello there! How can I help you today?"


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    register_fakes(monkeypatch.setitem)


def runtime_for(cache_dir: Path, *, enabled: bool = True) -> Runtime:
    return Runtime(fake_settings(cache={"enabled": enabled, "dir": cache_dir}))


async def say(session: Session, text: str) -> list[Message]:
    return [message async for message in session.say(text)]


def engine_calls(runtime: Runtime) -> tuple[int, int]:
    tts, animator = runtime.backends["tts:fake"], runtime.backends["animator"]
    assert isinstance(tts, FakeTTS) and isinstance(animator, FakeAnimator)
    return len(tts.batches), len(animator.requests)


def assert_identical(got: list[Message], want: list[Message]) -> None:
    """Identical: the same audio stream and the same video stream, and the same end.

    Each stream is compared message by message: every field of each SpeechAudio (PCM
    bytes, rate, times, phonemes, text) and each frame's index, time and pixels. How the
    two streams interleave is not compared: a fresh render's TTS and animator tasks run
    side by side, so that order varies from run to run.
    """
    for kind in (SpeechAudio, VideoFrame, EndOfTurn):
        a = [m for m in got if isinstance(m, kind)]
        b = [m for m in want if isinstance(m, kind)]
        assert len(a) == len(b), kind
        for x, y in zip(a, b, strict=True):
            if isinstance(x, VideoFrame):
                assert isinstance(y, VideoFrame)
                assert (x.index, x.pts_ns, x.speaking, x.turn_id) == (
                    y.index, y.pts_ns, y.speaking, y.turn_id)
                assert np.array_equal(x.image, y.image)
            else:
                assert x == y


async def test_a_warmed_phrase_plays_from_the_clip_cache_identical_to_a_fresh_render(
    tmp_path: Path,
) -> None:
    async with runtime_for(tmp_path) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())
        assert engine_calls(warmer) != (0, 0)

    async with runtime_for(tmp_path) as runtime:
        cached = await say(Session(runtime), PHRASE)
        assert engine_calls(runtime) == (0, 0)  # no TTS, no animator work
    stats = open_caches(runtime.settings.cache).clips
    assert stats is not None and stats.store.stats().hits >= 1

    # A fresh render: no cache, the clips' seed, a new session (first frame 0).
    async with runtime_for(tmp_path, enabled=False) as fresh_runtime:
        fresh = await say(Session(fresh_runtime, SessionOptions(seed=0)), PHRASE)
        assert engine_calls(fresh_runtime) != (0, 0)
    assert sum(isinstance(m, VideoFrame) for m in cached) > 10
    assert sum(isinstance(m, SpeechAudio) for m in cached) == 2
    assert isinstance(cached[-1], EndOfTurn)
    assert_identical(cached, fresh)


async def test_a_clip_later_in_a_session_continues_its_timeline(tmp_path: Path) -> None:
    async with runtime_for(tmp_path) as runtime:
        session = Session(runtime)
        first = await say(session, "First, something else.")
        await warm_phrases(runtime, [PHRASE], WarmOptions())
        calls = engine_calls(runtime)
        second = await say(session, PHRASE)
        assert engine_calls(runtime) == calls
    last = max(m.index for m in first if isinstance(m, VideoFrame))
    frames = [m for m in second if isinstance(m, VideoFrame)]
    assert [f.index for f in frames] == list(range(last + 1, last + 1 + len(frames)))
    speech = [m for m in second if isinstance(m, SpeechAudio)]
    assert speech[0].pts_ns == frames[0].pts_ns
    assert all(m.turn_id == second[-1].turn_id for m in second)


async def test_a_session_with_its_own_seed_renders_fresh_but_reuses_speech(
    tmp_path: Path,
) -> None:
    async with runtime_for(tmp_path) as runtime:
        await say(Session(runtime, SessionOptions(seed=5)), PHRASE)
        tts_calls, animator_calls = engine_calls(runtime)
        await say(Session(runtime, SessionOptions(seed=5)), PHRASE)
        assert engine_calls(runtime)[0] == tts_calls  # both sentences from the TTS cache
        assert engine_calls(runtime)[1] > animator_calls  # frames drawn with seed 5


async def test_a_corrupt_clip_is_rendered_again_and_kept(tmp_path: Path) -> None:
    async with runtime_for(tmp_path) as runtime:
        await warm_phrases(runtime, [PHRASE], WarmOptions())
        for entry in (tmp_path / "clips").glob("*.entry"):
            entry.write_bytes(entry.read_bytes()[:-100])
        _, animator_calls = engine_calls(runtime)
        again = await say(Session(runtime), PHRASE)
        assert engine_calls(runtime)[1] > animator_calls
        assert isinstance(again[-1], EndOfTurn)
        _, animator_calls = engine_calls(runtime)
        await say(Session(runtime), PHRASE)
        assert engine_calls(runtime)[1] == animator_calls


async def test_with_the_cache_off_nothing_is_stored(tmp_path: Path) -> None:
    async with runtime_for(tmp_path, enabled=False) as runtime:
        await say(Session(runtime), PHRASE)
    assert not (tmp_path / "clips").exists() and not (tmp_path / "tts").exists()
