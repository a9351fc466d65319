"""Hearing one user: the VAD stream, the utterance being transcribed, its partials.

A :class:`Hearing` belongs to one conversation. Each utterance gets a fresh
:class:`~talkface.asr.streaming.StreamingTranscriber` over the shared ASR engine; its
partial transcripts go to the conversation's outbox until the utterance ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from talkface.asr.base import ASRRequest
from talkface.asr.streaming import StreamingTranscriber
from talkface.clock import Clock
from talkface.messages import AudioChunk, Message, Transcript
from talkface.runtime import Runtime
from talkface.vad.endpoint import Endpointer, Utterance, VADEvent

_UTTERANCE_UPDATE_NS = 200_000_000  # how often the growing utterance goes to the ASR


class Hearing:
    """VAD and streaming ASR for one conversation.

    Args:
        runtime: the shared engines.
        language: the language spoken, or None to detect it.
        clock: time source.
        publish: where partial transcripts go (the outbox).
    """

    def __init__(self, runtime: Runtime, *, language: str | None, clock: Clock,
                 publish: Callable[[Message], Awaitable[None]]) -> None:
        self._runtime = runtime
        self._language = language
        self._clock = clock
        self._publish = publish
        self._endpointer: Endpointer | None = None
        self._transcriber: StreamingTranscriber | None = None
        self._partials_task: asyncio.Task[None] | None = None
        self._last_update_ns = 0
        self.heard_anything = False

    @property
    def started(self) -> bool:
        """Whether any audio has arrived."""
        return self._endpointer is not None

    async def push(self, chunk: AudioChunk) -> list[VADEvent]:
        """Feed microphone audio; the VAD events it completes."""
        if self._endpointer is None:
            self._endpointer = Endpointer(await self._runtime.vad(), self._runtime.settings.vad,
                                          engine=await self._runtime.vad_engine())
        events = await self._endpointer.apush(chunk)
        self._update_if_due()
        return events

    async def flush(self) -> list[VADEvent]:
        """End of input: the events that closes."""
        return await self._endpointer.aflush() if self._endpointer is not None else []

    def _update_if_due(self) -> None:
        endpointer, transcriber = self._endpointer, self._transcriber
        now = self._clock.now_ns()
        if transcriber is None or endpointer is None or not endpointer.in_speech:
            return
        if now - self._last_update_ns < _UTTERANCE_UPDATE_NS:
            return
        self._last_update_ns = now
        utterance = endpointer.utterance_audio()  # a copy: only every 200 ms
        if utterance is not None:
            transcriber.update(utterance)

    def pause(self, utterance: Utterance) -> None:
        """The speech paused: start its final pass speculatively."""
        if self._transcriber is not None:
            self._transcriber.pause(utterance)

    async def final_for(self, utterance: Utterance) -> Transcript | None:
        """The final transcript of ``utterance`` (None if no utterance is being heard)."""
        transcriber = self._transcriber
        return None if transcriber is None else await transcriber.final_for(utterance)

    async def new_utterance(self, turn_id: int) -> None:
        """Speech started: a fresh transcriber; its partials are tagged ``turn_id``."""
        self.heard_anything = True
        await self.close()
        asr = await self._runtime.asr_engine()
        backend = await self._runtime.asr_backend()

        async def submit(request: ASRRequest) -> Transcript:
            # A bad request fails here, alone, not the whole batch it would join.
            backend.check_request(request)
            return await asr.submit(request)

        transcriber = StreamingTranscriber(
            submit,
            partial_interval_ms=self._runtime.settings.asr.partial_interval_ms,
            language=self._language or self._runtime.settings.asr.language,
            turn_id=turn_id,
            clock=self._clock,
        )
        self._transcriber = transcriber
        self._partials_task = asyncio.create_task(self._forward_partials(transcriber, turn_id))

    async def _forward_partials(self, transcriber: StreamingTranscriber, turn_id: int) -> None:
        async for partial in transcriber.partials():
            await self._publish(dataclasses.replace(partial, turn_id=turn_id))

    async def stop_partials(self) -> None:
        """The final transcript is coming; late partials would only confuse the client."""
        task, self._partials_task = self._partials_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def close(self) -> None:
        """Stop transcribing (barge-in cleanup, end of input, shutdown)."""
        transcriber, self._transcriber = self._transcriber, None
        if transcriber is not None:
            await transcriber.aclose()
        await self.stop_partials()
