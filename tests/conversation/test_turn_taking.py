"""How a conversation ends, cuts and checks its turns (fakes; the real models are in
test_conversation.py and test_chat_cli.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from talkface.clock import ManualClock
from talkface.conversation import Conversation, ConversationOptions
from talkface.errors import BadInput
from talkface.messages import EndOfTurn, Error, Interrupt, Message, SpeechAudio
from talkface.runtime import Runtime
from talkface.testing import fake_settings, register_fakes

pytestmark = pytest.mark.unit


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    register_fakes(monkeypatch.setitem)
    async with Runtime(fake_settings()) as runtime:
        yield runtime


def conversation(runtime: Runtime, **options: object) -> Conversation:
    # A clock that stands still: whatever has started playing is still being heard.
    return Conversation(runtime, ConversationOptions(voice="fake", seed=1, **options),  # type: ignore[arg-type]
                        clock=ManualClock())


async def test_a_turn_cut_while_it_plays_ends_once_and_says_it_was_cut(runtime: Runtime) -> None:
    received: list[Message] = []
    async with conversation(runtime) as talk:
        await talk.send_text("Tell me something.")
        first = await talk.wait_for_answer()
        assert first is not None  # made, and its end waits in the outbox behind its media
        outbox = talk.messages()
        async for message in outbox:  # the listener starts hearing the answer
            received.append(message)
            if talk.timeline.due_ns(message) is not None:
                break
        await talk.send_text("Something else, please.")
        second = await talk.wait_for_answer()
        await talk.end_input()
        async for message in outbox:
            talk.timeline.due_ns(message)
            received.append(message)
    assert [m.turn_id for m in received if isinstance(m, Interrupt)] == [first]
    ends = [m for m in received if isinstance(m, EndOfTurn)]
    assert [(e.turn_id, e.interrupted) for e in ends] == [(first, True), (second, False)]


async def test_a_reply_the_voice_cannot_speak_is_refused_as_say_refuses_it(
    runtime: Runtime,
) -> None:
    async with conversation(runtime) as talk:
        runtime.backends["llm"].reply = "你好，很高兴见到你。今天天气很好。"
        await talk.send_text("你好")
        turn_id = await talk.wait_for_answer()
        await talk.end_input()
        received = [message async for message in talk.messages()]
    errors = [m for m in received if isinstance(m, Error)]
    assert [(e.code, e.turn_id) for e in errors] == [("bad_input", turn_id)]
    assert "speaks 'en', but the text is 'zh'" in errors[0].message
    assert not [m for m in received if isinstance(m, SpeechAudio)]
    (end,) = [m for m in received if isinstance(m, EndOfTurn)]
    assert end.turn_id == turn_id


async def test_a_conversation_keeps_only_its_latest_turns_when_told(runtime: Runtime) -> None:
    options = ConversationOptions(voice="fake", seed=1, live=False, kept_turns=2)
    async with Conversation(runtime, options) as talk:
        outbox = talk.messages()
        for question in ("One?", "Two?", "Three?", "Four?"):
            await talk.send_text(question)
            async for message in outbox:
                if isinstance(message, EndOfTurn):
                    break
        await talk.end_input()
    assert [record.transcript for record in talk.turns] == ["Three?", "Four?"]
    assert talk.turn_count == 4
    with pytest.raises(ValueError, match="kept_turns must be at least 1"):
        ConversationOptions(kept_turns=0)


@pytest.mark.parametrize("language", ["fr", "de", "english"])
def test_a_conversation_in_an_unsupported_language_is_refused(language: str) -> None:
    with pytest.raises(BadInput, match=r"not supported.*en, zh"):
        ConversationOptions(language=language)


async def test_an_empty_message_is_refused_before_it_is_queued(runtime: Runtime) -> None:
    async with conversation(runtime) as talk:
        for text in ("", "  ", "?!"):
            with pytest.raises(BadInput, match="nothing to say: the text is empty"):
                await talk.send_text(text)
        await talk.end_input()
        assert not [message async for message in talk.messages()]


async def test_a_turn_holds_render_jobs_back_until_its_first_frame(runtime: Runtime) -> None:
    """Live before batch: between a turn's start and its first video frame, offline work
    (render jobs) holds back (talkface.priority); from that frame on it may run."""
    from talkface import priority
    from talkface.messages import VideoFrame

    held_while_generating: list[float] = []
    held_at_first_frame = None
    async with conversation(runtime) as talk:
        llm = runtime.backends["llm"]
        generate = llm._generate_batch

        async def generating(requests):  # type: ignore[no-untyped-def]
            held_while_generating.append(priority.hold_left_s())
            return await generate(requests)

        llm._generate_batch = generating
        await talk.send_text("Tell me something.")
        await talk.end_input()
        async for message in talk.messages():
            if isinstance(message, VideoFrame) and held_at_first_frame is None:
                held_at_first_frame = priority.hold_left_s()
    assert held_while_generating and held_while_generating[0] > 0
    assert held_at_first_frame == 0
    assert priority.hold_left_s() == 0
