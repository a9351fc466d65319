"""The clip and TTS caches with the real voice (piper) and the real animator.

The real animator draws blinks and head motion from the seed, so this is where "a
cached clip is identical to a fresh render with the clips' seed" is really tested (the
fakes in test_clip_cache.py ignore the seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from talkface.cache.warm import WarmOptions, warm_phrases
from talkface.cli import app
from talkface.config import Settings, load_settings
from talkface.messages import Message, SpeechAudio, VideoFrame
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions

pytestmark = pytest.mark.integration

PHRASE = "Thank you for waiting."


def settings_for(cache_dir: Path, *, enabled: bool = True) -> Settings:
    return load_settings(animator={"size_px": 192}, cache={"enabled": enabled, "dir": cache_dir})


async def say(session: Session, text: str) -> list[Message]:
    return [message async for message in session.say(text)]


async def test_a_warmed_phrase_needs_no_model_work_and_matches_a_fresh_render(
    tmp_path: Path,
) -> None:
    async with Runtime(settings_for(tmp_path)) as warmer:
        await warm_phrases(warmer, [PHRASE], WarmOptions(voice="joe"))

    async with Runtime(settings_for(tmp_path)) as runtime:
        await runtime.warm_up(voices=(runtime.resolve_voice("joe", "en"),))
        before = {e.name: e.stats.requests for e in runtime.engines}
        cached = await say(Session(runtime, SessionOptions(voice="joe")), PHRASE)
        assert {e.name: e.stats.requests for e in runtime.engines} == before

    async with Runtime(settings_for(tmp_path, enabled=False)) as fresh_runtime:
        fresh = await say(Session(fresh_runtime, SessionOptions(voice="joe", seed=0)), PHRASE)
        other_seed = await say(Session(fresh_runtime, SessionOptions(voice="joe", seed=9)),
                               PHRASE)

    def frames(messages: list[Message]) -> list[VideoFrame]:
        return [m for m in messages if isinstance(m, VideoFrame)]

    def speech(messages: list[Message]) -> list[SpeechAudio]:
        return [m for m in messages if isinstance(m, SpeechAudio)]

    assert speech(cached) == speech(fresh)  # byte-equal PCM, same times and phonemes
    assert len(frames(cached)) == len(frames(fresh)) > 10
    for got, want in zip(frames(cached), frames(fresh), strict=True):
        assert (got.index, got.pts_ns) == (want.index, want.pts_ns)
        assert np.array_equal(got.image, want.image)
    # The seed shows in the frames, so the equality above is not a matter of course.
    assert any(not np.array_equal(a.image, b.image)
               for a, b in zip(frames(fresh), frames(other_seed), strict=False))


def test_cache_warm_then_stats_on_the_command_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# greetings\nThank you for waiting.\n\n", encoding="utf-8")
    monkeypatch.setenv("TALKFACE_CACHE__DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TALKFACE_ANIMATOR__SIZE_PX", "160")
    runner = CliRunner()
    warmed = runner.invoke(app, ["cache", "warm", str(phrases), "--avatar", "default",
                                 "--voice", "joe", "-q"])
    assert warmed.exit_code == 0, warmed.output
    assert "warmed 1 phrases" in warmed.output
    stats = runner.invoke(app, ["cache", "stats"])
    assert stats.exit_code == 0, stats.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in stats.output.splitlines()
             if line.startswith("│")]
    header = ["cache", "hits", "misses", "corrupt", "evictions", "entries", "MB"]
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in cells}
    assert rows["clips"]["entries"] == "1" and rows["clips"]["misses"] == "1"
    assert rows["tts"]["entries"] == "1"  # the phrase is one sentence
    assert rows["videos"]["entries"] == "1"  # its MP4, for `say` and render jobs
