"""How a session wires TTS and the animator (fakes; the real models are in test_say.py)."""

from __future__ import annotations

import pytest

from talkface.errors import BackendError, BadInput, PayloadTooLarge
from talkface.messages import Emotion, EndOfTurn, SpeechAudio, VideoFrame
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
from talkface.testing import FakeAnimator, FakeTTS, fake_settings, register_fakes

pytestmark = pytest.mark.unit


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch):
    register_fakes(monkeypatch.setitem)
    async with Runtime(fake_settings()) as runtime:
        yield runtime


async def collect(session: Session, text: str) -> list[object]:
    return [message async for message in session.say(text)]


async def test_a_turn_yields_speech_then_frames_covering_it_then_end_of_turn(
    runtime: Runtime,
) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    messages = await collect(session, "Hello there, friend. How are you today?")
    speech = [m for m in messages if isinstance(m, SpeechAudio)]
    frames = [m for m in messages if isinstance(m, VideoFrame)]
    assert isinstance(messages[-1], EndOfTurn)
    assert len(speech) == 2
    # Speech is laid end to end on the timeline.
    assert speech[0].pts_ns == 0
    assert speech[1].pts_ns == speech[0].duration_ns
    total_ns = speech[1].pts_ns + speech[1].duration_ns
    # Frames are consecutive, 25 fps, and cover all the audio and no more than a frame past it.
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[-1].pts_ns < total_ns <= frames[-1].pts_ns + 40_000_000
    assert messages[-1].spoken_text.startswith("Hello there")


async def test_frames_show_the_audio_under_them(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    messages = await collect(session, "A fairly long sentence to speak.")
    frames = [m for m in messages if isinstance(m, VideoFrame)]
    # The fake animator draws loudness as brightness: speech frames are bright, the
    # frame past the end of speech is not brighter than they are.
    assert min(int(f.image.mean()) for f in frames[:-1]) > 0


async def test_the_first_request_is_short_so_the_first_frame_comes_early(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    await collect(session, "One sentence that is long enough to need many frames.")
    animator = runtime.backends["animator"]
    assert isinstance(animator, FakeAnimator)
    assert animator.requests[0].num_frames <= 2
    assert max(r.num_frames for r in animator.requests) > 2


async def test_turns_continue_the_same_timeline(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    first = await collect(session, "First turn.")
    second = await collect(session, "Second turn.")
    last_first = max(m.index for m in first if isinstance(m, VideoFrame))
    first_second = min(m.index for m in second if isinstance(m, VideoFrame))
    assert first_second == last_first + 1
    assert second[-1].turn_id == first[-1].turn_id + 1


async def test_sessions_share_one_engine_and_its_batches(runtime: Runtime) -> None:
    import asyncio

    sessions = [Session(runtime, SessionOptions(seed=i)) for i in range(4)]
    await asyncio.gather(*(collect(s, "Everyone talks at once.") for s in sessions))
    tts = runtime.backends["tts:fake"]
    assert isinstance(tts, FakeTTS)
    assert sum(len(batch) for batch in tts.batches) == 4
    assert len([key for key in runtime.backends if key.startswith("tts")]) == 1


async def test_empty_and_oversized_text_are_refused_before_any_work(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    with pytest.raises(BadInput, match="empty"):
        await collect(session, "  \n ")
    with pytest.raises(BadInput, match="empty"):
        await collect(session, "?!...")
    with pytest.raises(PayloadTooLarge, match="limit is 20000"):
        await collect(session, "a" * 20_001)
    assert "tts:fake" not in runtime.backends


async def test_a_backend_failure_surfaces_as_a_backend_error(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    await collect(session, "Warm up.")
    runtime.backends["tts:fake"].fail_on = "explode"
    with pytest.raises(BackendError, match="refuses 'explode'"):
        await collect(session, "Fine. Then explode.")
    # The session is still usable afterwards.
    messages = await collect(session, "Still here.")
    assert isinstance(messages[-1], EndOfTurn)


async def test_an_unknown_voice_lists_the_voices_there_are(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(voice="nobody"))
    with pytest.raises(BadInput, match=r"unknown voice 'nobody'; available voices: .*fake"):
        await collect(session, "Hello.")


async def test_an_emotion_tag_is_an_expression_and_is_not_spoken(runtime: Runtime) -> None:
    # `talkface say` and render jobs both speak through Session.say.
    session = Session(runtime, SessionOptions(seed=1))
    text = "[happy] Hello there, my good friend. [serious] Please be careful."
    assert session.check_text(text) == text
    messages = await collect(session, text)
    speech = [m for m in messages if isinstance(m, SpeechAudio)]
    spoken = [s.text.lower() for s in speech]
    assert not [s for s in spoken if "happy" in s or "serious" in s], spoken
    assert speech[0].emotion == Emotion.HAPPY and speech[-1].emotion == Emotion.SERIOUS
    tts = runtime.backends["tts:fake"]
    assert not [t for batch in tts.batches for t in batch if "happy" in t.lower()]
    assert "happy" not in messages[-1].spoken_text


async def test_a_tag_alone_is_nothing_to_say(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(seed=1))
    with pytest.raises(BadInput, match="nothing to say"):
        session.check_text("[happy]")
    with pytest.raises(BadInput, match="nothing to say"):
        await collect(session, " [serious] ")


async def test_a_voice_that_cannot_speak_the_text_is_refused(runtime: Runtime) -> None:
    session = Session(runtime, SessionOptions(voice="fake"))
    with pytest.raises(BadInput, match="voice 'fake' speaks 'en', but the text is 'zh'"):
        await collect(session, "你好世界")
