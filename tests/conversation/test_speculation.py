"""Speculation, confirmation and barge-in, on fakes and virtual time (milliseconds each).

The user is scripted as audio: a loud tone where they speak, zeros where they do not.
:class:`~talkface.testing.FakeVAD` hears speech where the audio is loud (the real
endpointer applies the real hangover), :class:`~talkface.testing.FakeASR` hears one word
of its text per 0.4 s of speech, and a :class:`~talkface.clock.ManualClock` is the wall
clock, moved by hand as the audio "arrives" and as the listener "hears" the answer. The
same behaviours with every real model are in test_conversation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.clock import ManualClock
from talkface.conversation import Conversation, ConversationOptions
from talkface.llm.memory import INTERRUPTED_MARK
from talkface.messages import (
    NS_PER_S,
    AudioChunk,
    EndOfTurn,
    Interrupt,
    Message,
    SpeechAudio,
    Transcript,
)
from talkface.runtime import Runtime
from talkface.testing import fake_settings, register_fakes

pytestmark = pytest.mark.unit

RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # 32 ms, as a browser sends
CHUNK_NS = CHUNK_SAMPLES * NS_PER_S // RATE_HZ
REPLY = "First sentence here. Then a second one follows. And a third ends it."


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    register_fakes(monkeypatch.setitem)
    async with Runtime(fake_settings()) as runtime:
        (await runtime.llm_backend()).reply = REPLY  # type: ignore[attr-defined]
        yield runtime


class User:
    """Speaks into a conversation: loud chunks or silent ones, moving the clock."""

    def __init__(self, talk: Conversation, clock: ManualClock) -> None:
        self._talk = talk
        self._clock = clock
        self._pts_ns = 0
        t = np.arange(CHUNK_SAMPLES) / RATE_HZ
        self._loud = float32_to_pcm16(0.3 * np.sin(2 * np.pi * 200 * t))
        self._quiet = bytes(2 * CHUNK_SAMPLES)

    async def speak(self, seconds: float) -> None:
        await self._send(seconds, self._loud)

    async def pause(self, seconds: float) -> None:
        await self._send(seconds, self._quiet)

    async def _send(self, seconds: float, pcm: bytes) -> None:
        for _ in range(round(seconds * NS_PER_S / CHUNK_NS)):
            await self._talk.send_audio(AudioChunk(pcm=pcm, sample_rate_hz=RATE_HZ,
                                                   pts_ns=self._pts_ns))
            self._pts_ns += CHUNK_NS
            await self._talk.wait_for_input()  # heard before the next one arrives
            self._clock.advance(CHUNK_NS)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (real time, bounded) for work running in a model's worker thread."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def play_until(talk: Conversation, outbox: AsyncIterator[Message],
                     received: list[Message], kind: type) -> Message:
    """Play the outbox like a player (placing media on the timeline) up to a ``kind``."""
    async for message in outbox:
        talk.timeline.due_ns(message)
        received.append(message)
        if isinstance(message, kind):
            return message
    raise AssertionError(f"the conversation ended before a {kind.__name__}")


async def test_a_pause_starts_the_answer_and_the_end_of_speech_releases_it(
    runtime: Runtime,
) -> None:
    clock = ManualClock()
    asr = await runtime.asr_backend()
    async with Conversation(runtime, ConversationOptions(voice="fake", seed=1),
                            clock=clock) as talk:
        user = User(talk, clock)
        await user.speak(2.0)
        await user.pause(0.6)  # the pause (after 100 ms), then the end (after 400 ms)
        turn_id = await talk.wait_for_answer()
        await talk.end_input()
        received = [message async for message in talk.messages()]
    finals = [m for m in received if isinstance(m, Transcript) and m.is_final]
    assert [(m.text, m.turn_id) for m in finals] == [("what is the weather like", turn_id)]
    # The answer made on the pause was the one released: one final ASR pass, one turn.
    final_passes = [r for batch in asr.batches for r in batch if r.is_final]  # type: ignore[attr-defined]
    assert len(final_passes) == 1
    (record,) = talk.turns
    assert record.reply == REPLY and not record.interrupted
    # Its latency counts from the end of speech, not from the speculative start.
    marks = record.trace.marks_ns
    assert all(at >= marks["vad_end"] for at in marks.values())
    ends = [m for m in received if isinstance(m, EndOfTurn)]
    assert [(e.turn_id, e.interrupted) for e in ends] == [(turn_id, False)]


async def test_speech_going_on_after_a_pause_drops_the_speculative_answer(
    runtime: Runtime,
) -> None:
    clock = ManualClock()
    asr = await runtime.asr_backend()
    llm = await runtime.llm_backend()
    async with Conversation(runtime, ConversationOptions(voice="fake", seed=1),
                            clock=clock) as talk:
        user = User(talk, clock)
        await user.speak(0.8)
        await user.pause(0.25)  # long enough for a pause, too short to end the utterance
        # The pause started a turn: its final ASR pass runs (in the model's thread).
        await until(lambda: any(r.is_final for batch in asr.batches for r in batch))  # type: ignore[attr-defined]
        await user.speak(1.2)
        await user.pause(0.6)
        await talk.wait_for_answer()
        await talk.end_input()
        received = [message async for message in talk.messages()]
    # Whatever the first pause started ("what is") never reaches the listener.
    finals = [m.text for m in received if isinstance(m, Transcript) and m.is_final]
    assert finals == ["what is the weather like"]
    assert [t.transcript for t in talk.turns] == ["what is the weather like"]
    assert len([m for m in received if isinstance(m, EndOfTurn)]) == 1
    assert "what is the weather like" in llm.prompts  # type: ignore[attr-defined]
    spoken = " ".join(m.text for m in received if isinstance(m, SpeechAudio))
    assert spoken == REPLY
    # The first pause did start an answer: a final pass over the first two words.
    final_passes = [r for batch in asr.batches for r in batch if r.is_final]  # type: ignore[attr-defined]
    assert len(final_passes) == 2


async def test_speaking_over_the_answer_cuts_it_where_the_listener_was(
    runtime: Runtime,
) -> None:
    clock = ManualClock()
    async with Conversation(runtime, ConversationOptions(voice="fake", seed=1),
                            clock=clock) as talk:
        user = User(talk, clock)
        await talk.send_text("Tell me something.")
        first = await talk.wait_for_answer()
        outbox = talk.messages()
        received: list[Message] = []
        await play_until(talk, outbox, received, SpeechAudio)  # the answer starts playing
        clock.advance(NS_PER_S // 4)  # a quarter second into its first sentence
        await user.speak(1.2)  # the user talks over it
        await user.pause(0.6)
        second = await talk.wait_for_answer()
        await talk.end_input()
        async for message in outbox:
            talk.timeline.due_ns(message)
            received.append(message)
    interrupts = [m for m in received if isinstance(m, Interrupt)]
    assert [(m.turn_id, m.reason) for m in interrupts] == [(first, "barge_in")]
    ends = [(m.turn_id, m.interrupted) for m in received if isinstance(m, EndOfTurn)]
    assert ends == [(first, True), (second, False)]
    cut, answered = talk.turns
    assert cut.interrupted and cut.spoken == "First sentence here."
    assert answered.transcript == "what is the" and answered.reply == REPLY
    # The memory keeps only what was heard of the cut answer, marked as cut.
    assert talk.memory is not None
    history = [m.content for m in talk.memory.prompt("next") if m.role == "assistant"]
    assert history[0] == "First sentence here." + INTERRUPTED_MARK
    assert history[1] == REPLY


async def test_a_sentence_said_before_is_not_synthesised_again_and_the_trace_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path, runtime: Runtime,
) -> None:
    runtime.settings = runtime.settings.model_copy(update={
        "cache": runtime.settings.cache.model_copy(update={"enabled": True, "dir": tmp_path})})
    tts = runtime.backends  # filled once the fake voice is loaded
    async with Conversation(runtime, ConversationOptions(voice="fake", seed=1),
                            clock=ManualClock()) as talk:
        for question in ("Hello?", "Hello again?"):
            await talk.send_text(question)
            await talk.wait_for_answer()
        await talk.end_input()
        [message async for message in talk.messages()]
    first, second = talk.turns
    fake_tts = next(b for key, b in tts.items() if key.startswith("tts"))
    sentences = [text for batch in fake_tts.batches for text in batch]
    assert len(sentences) == 3  # the reply's three sentences, synthesised once
    assert "tts_cache_hit" not in first.trace.marks_ns
    assert "tts_cache_hit" in second.trace.marks_ns
