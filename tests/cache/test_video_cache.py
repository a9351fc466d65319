"""A warmed `say` copies its finished MP4 from the video cache: no model is loaded,
nothing is drawn or encoded, and the file is byte for byte a fresh render's.

Fakes stand in for the voice and the animator (they are deterministic, so "a fresh
render" is exactly reproducible); tests/test_say_cli.py does the same with the real
models through the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from talkface.cache.warm import WarmOptions, warm_phrases
from talkface.commands.say import SayOptions, SayResult, say_to_file
from talkface.runtime import Runtime
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


def runtime_for(cache_dir: Path, *, enabled: bool = True, **sections: dict[str, object]
                ) -> Runtime:
    cache: dict[str, object] = {"enabled": enabled, "dir": cache_dir, **sections.pop("cache", {})}
    return Runtime(fake_settings(cache=cache, **sections))


async def say(runtime: Runtime, output: Path, text: str = PHRASE, *,
              seed: int | None = None) -> SayResult:
    return await say_to_file(runtime, SayOptions(text=text, output=output, seed=seed,
                                                 quiet=True))


def engine_calls(runtime: Runtime) -> tuple[int, int]:
    """TTS batches and animator requests so far (0, 0 when no model was even loaded)."""
    tts, animator = runtime.backends.get("tts:fake"), runtime.backends.get("animator")
    assert tts is None or isinstance(tts, FakeTTS)
    assert animator is None or isinstance(animator, FakeAnimator)
    return (0 if tts is None else len(tts.batches),
            0 if animator is None else len(animator.requests))


def video_entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "videos").glob("*.entry"))


async def test_a_warmed_say_copies_the_mp4_a_fresh_render_writes(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())
    assert len(video_entries(cache_dir)) == 1

    async with runtime_for(cache_dir) as runtime:
        cached = await say(runtime, tmp_path / "cached.mp4")
        assert runtime.backends == {} and runtime.engines == ()  # not a model loaded
    assert cached.cache == "video"
    assert "from the video cache" in cached.summary()

    # A fresh render of the same sentence: no cache, the clips' seed.
    async with runtime_for(cache_dir, enabled=False) as fresh_runtime:
        fresh = await say(fresh_runtime, tmp_path / "fresh.mp4", seed=0)
        assert engine_calls(fresh_runtime) != (0, 0)
    assert fresh.cache is None
    assert (tmp_path / "cached.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()
    assert cached.video.frames == fresh.video.frames > 10
    assert cached.video.audio_samples == fresh.video.audio_samples


async def test_the_first_say_renders_and_keeps_the_second_copies(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as runtime:
        first = await say(runtime, tmp_path / "first.mp4")
    assert first.cache is None and len(video_entries(cache_dir)) == 1
    async with runtime_for(cache_dir) as runtime:
        second = await say(runtime, tmp_path / "second.mp4")
        assert runtime.backends == {}
    assert second.cache == "video"
    assert (tmp_path / "first.mp4").read_bytes() == (tmp_path / "second.mp4").read_bytes()


async def test_a_seed_is_part_of_the_key(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as runtime:
        assert (await say(runtime, tmp_path / "a.mp4", seed=5)).cache is None
    async with runtime_for(cache_dir) as runtime:
        assert (await say(runtime, tmp_path / "b.mp4", seed=5)).cache == "video"
        assert runtime.backends == {}
    async with runtime_for(cache_dir) as runtime:
        assert (await say(runtime, tmp_path / "c.mp4", seed=6)).cache is None
        assert engine_calls(runtime)[1] > 0  # frames drawn with seed 6


async def test_a_long_text_with_a_random_seed_is_not_kept(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir, cache={"max_clip_chars": 10}) as runtime:
        await say(runtime, tmp_path / "a.mp4")  # too long for a clip: a random seed
        again = await say(runtime, tmp_path / "b.mp4")
    assert again.cache is None and video_entries(cache_dir) == []


async def test_other_encoder_settings_are_another_video(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())
    async with runtime_for(cache_dir, output={"crf": 30}) as runtime:
        other = await say(runtime, tmp_path / "crf30.mp4")
        assert engine_calls(runtime) == (0, 0)  # the clip was played: no engine work
    assert other.cache == "clip"
    assert len(video_entries(cache_dir)) == 2  # and its MP4 kept under its own key


async def test_a_corrupt_video_is_made_again_from_the_clip(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())
    async with runtime_for(cache_dir) as runtime:
        good = await say(runtime, tmp_path / "good.mp4")
    for entry in video_entries(cache_dir):
        entry.write_bytes(entry.read_bytes()[:-100])
    async with runtime_for(cache_dir) as runtime:
        remade = await say(runtime, tmp_path / "remade.mp4")
    assert (good.cache, remade.cache) == ("video", "clip")
    assert (tmp_path / "good.mp4").read_bytes() == (tmp_path / "remade.mp4").read_bytes()
    async with runtime_for(cache_dir) as runtime:
        assert (await say(runtime, tmp_path / "again.mp4")).cache == "video"


async def test_warming_twice_encodes_once(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    async with runtime_for(cache_dir) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions())
        made = video_entries(cache_dir)[0].stat().st_mtime_ns
        await warm_phrases(warmer, [PHRASE], WarmOptions())
    assert [p.stat().st_mtime_ns for p in video_entries(cache_dir)] == [made]
