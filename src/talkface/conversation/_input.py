"""A conversation's input: the inbox, and what each piece of it means for the turns.

Clients put microphone chunks, typed text, interrupts and "wait for the answer" into
one bounded inbox, in order; :class:`Listener` takes them one at a time, runs audio
through the :class:`~talkface.conversation._hearing.Hearing` (VAD and streaming ASR) and
turns what happens into calls on :class:`~talkface.conversation._turn_taking.TurnTaking`:
speech starting cuts the answer playing, a pause starts a speculative answer, the end
of the utterance confirms it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from talkface.clock import Clock
from talkface.conversation._hearing import Hearing
from talkface.conversation._turn_taking import TurnTaking
from talkface.conversation._turns import ActiveTurn
from talkface.errors import TalkfaceError
from talkface.messages import AudioChunk, Error
from talkface.output.queue import OutputQueue
from talkface.vad.endpoint import (
    SpeechDiscarded,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    VADEvent,
)

INBOX_SIZE = 512
"""Inputs a conversation holds before a sender waits (about 16 s of 32 ms chunks)."""


@dataclass(frozen=True, slots=True)
class Text:
    """A typed message (already checked)."""

    text: str


@dataclass(frozen=True, slots=True)
class WaitForAnswer:
    """Resolved with the current turn once everything before it in the inbox is handled."""

    done: asyncio.Future[ActiveTurn | None]


@dataclass(frozen=True, slots=True)
class InterruptRequest:
    """Stop the avatar's answer (an interrupt button)."""

    reason: str


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """No more input will come."""


InboxItem = AudioChunk | Text | WaitForAnswer | InterruptRequest | EndOfInput


class Listener:
    """Reads one conversation's inbox until its input ends.

    Args:
        hearing: the conversation's VAD and ASR.
        turns: its turn-taking.
        outbox: where errors about the input go.
        clock: the wall clock (input arrives in real time: input time maps to it).
        speech_pad_ms: how much audio the VAD keeps around speech (the utterance's end
            is that much after the last word).
    """

    def __init__(self, *, hearing: Hearing, turns: TurnTaking, outbox: OutputQueue,
                 clock: Clock, speech_pad_ms: float) -> None:
        self.inbox: asyncio.Queue[InboxItem] = asyncio.Queue(INBOX_SIZE)
        self._hearing = hearing
        self._turns = turns
        self._outbox = outbox
        self._clock = clock
        self._pad_ns = int(speech_pad_ms * 1e6)
        self._start_ns = clock.now_ns()
        self._input_origin_ns: int | None = None  # clock time of input pts 0
        self._chunk_end_ns: int | None = None  # input time of the chunk being handled
        self._onset_ns: int | None = None  # the latest speech onset the VAD reported

    async def run(self) -> None:
        """Handle input until :class:`EndOfInput`; errors are reported, not raised."""
        while True:
            item = await self.inbox.get()
            try:
                if isinstance(item, AudioChunk):
                    await self._on_audio(item)
                elif isinstance(item, Text):
                    await self._turns.barge_in("new_message")
                    self._turns.start_typed(item.text)
                elif isinstance(item, InterruptRequest):
                    await self._turns.barge_in(item.reason)
                elif isinstance(item, WaitForAnswer):
                    if not item.done.done():
                        item.done.set_result(self._turns.current)
                else:
                    await self._on_end_of_input()
                    return
            except TalkfaceError as exc:
                await self._turns.report(exc, self._turns.last_turn_id)

    async def _on_audio(self, chunk: AudioChunk) -> None:
        self._chunk_end_ns = chunk.pts_ns + chunk.duration_ns
        if self._input_origin_ns is None:
            self._input_origin_ns = self._clock.now_ns() - chunk.pts_ns
        for event in await self._hearing.push(chunk):
            await self._on_vad_event(event)

    async def _on_vad_event(self, event: VADEvent) -> None:
        turns = self._turns
        if isinstance(event, SpeechStart):
            self._onset_ns = event.pts_ns
            await turns.barge_in("barge_in", at_input_ns=self._chunk_end_ns,
                                 onset_ns=self._onset_ns)
            await self._hearing.new_utterance(turns.last_turn_id + 1)
        elif isinstance(event, SpeechPause):
            self._hearing.pause(event.utterance)
            await turns.speculate(event.utterance)
        elif isinstance(event, SpeechEnd):
            await self._hearing.stop_partials()
            # The trace starts at the end of the user's speech (the last speech window).
            end_ns = self._clock_time(event.utterance.end_pts_ns - self._pad_ns)
            await turns.confirm(event.utterance, speech_end_clock_ns=end_ns)
        elif isinstance(event, SpeechDiscarded):
            await turns.cancel_speculative()
            await self._hearing.close()

    async def _on_end_of_input(self) -> None:
        for event in await self._hearing.flush():
            await self._on_vad_event(event)
        await self._turns.cancel_speculative()
        if self._hearing.started and not self._hearing.heard_anything and (
            not self._turns.records
        ):
            await self._outbox.put(Error(
                code="no_speech",
                message="no speech was heard in the audio; check the microphone or file",
                turn_id=self._turns.last_turn_id,
            ))
        await self._turns.finish()
        await self._hearing.close()
        self._outbox.close()

    def _clock_time(self, pts_ns: int) -> int:
        """Clock time at which input time ``pts_ns`` was spoken."""
        origin = self._input_origin_ns if self._input_origin_ns is not None else self._start_ns
        return origin + pts_ns
