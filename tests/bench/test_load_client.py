"""The load client pairs each question with its own turn's events."""

from __future__ import annotations

import asyncio

import pytest

from talkface.bench.load import LoadOptions, TurnResult, _User

pytestmark = pytest.mark.unit


def user() -> _User:
    return _User(0, "http://127.0.0.1:1", "token", [], LoadOptions(), deadline=0.0,
                 start_talking=asyncio.Event())


async def collect(client: _User, *events: dict[str, object]) -> TurnResult:
    for event in events:
        client._events.put_nowait(event)
    result = TurnResult(session=0, question="q", ttff_ms=None)
    await client._collect_turn(result, speech_end=0.0)
    return result


async def test_a_turn_given_up_on_does_not_end_the_next_question() -> None:
    """The soak's four sessions once waited over 60 s for an answer; the late end of that
    turn (interrupted by the next question) was then taken for the next question's end,
    and every later turn was reported with an empty transcript."""
    client = user()
    first = await collect(client, {"type": "transcript", "final": True, "text": "one",
                                   "turn_id": 1}, {"type": "error", "message": "x",
                                                   "code": "no_speech", "turn_id": 1})
    assert first.transcript == "one"
    second = await collect(
        client,
        {"type": "turn_end", "turn_id": 1, "interrupted": True, "spoken_text": ""},
        {"type": "transcript", "final": True, "text": "two", "turn_id": 2},
        {"type": "turn_end", "turn_id": 2, "spoken_text": "an answer"},
        {"type": "latency", "turn_id": 2, "stages_ms": {"first_video_frame": 800.0}},
    )
    assert (second.transcript, second.reply_chars) == ("two", len("an answer"))
    assert second.server_latency_ms == {"first_video_frame": 800.0}
    assert second.route is None  # a server without routing says nothing of it
    third = await collect(
        client,
        {"type": "turn_end", "turn_id": 3, "spoken_text": "from the FAQ"},
        {"type": "latency", "turn_id": 3, "stages_ms": {}, "route": "faq"},
    )
    assert third.route == "faq"


def test_background_render_jobs_ask_for_about_the_video_length_given() -> None:
    from talkface.bench.render_job import WORDS_PER_S, BackgroundRender, RenderRun, story_text

    for seconds in (5.0, 120.0):
        words = len(story_text(seconds).split())
        assert seconds * WORDS_PER_S <= words < seconds * WORDS_PER_S + 25
    def sentences(number: int) -> set[str]:
        return {s.strip() for s in story_text(60, number).split(".")} - {""}

    assert not sentences(1) & sentences(2)  # nothing for a cache to share
    jobs = BackgroundRender(120.0, runs=[RenderRun(10.0, 40.0, 118.2),
                                         RenderRun(40.5, 70.0, 118.3),
                                         RenderRun(70.5, 71.0, error="RuntimeError: 500")])
    assert [jobs.covers(t) for t in (9.9, 10.0, 40.2, 40.5, 69.0, 75.0)] == [
        False, True, False, True, True, False]
    summary = jobs.summary()
    assert (summary["jobs"], summary["finished"], summary["wall_s_median"]) == (3, 2, 29.8)
    assert summary["errors"] == ["RuntimeError: 500"]
