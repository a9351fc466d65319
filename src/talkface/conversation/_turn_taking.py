"""Turn-taking: which turn is answering, speculation on pauses, barge-in.

:class:`TurnTaking` is one conversation's state machine of turns (each an
:class:`~talkface.conversation._turns.ActiveTurn` with a
:class:`~talkface.conversation._turns.TurnState`): it starts a turn per typed message,
a speculative one per pause in the user's speech, confirms or drops it when the speech
ends or goes on, and cuts the turn playing when the user speaks over it. What a turn
says is :class:`~talkface.conversation._answer.Answering`'s business; when its media
plays is the :class:`~talkface.output.timeline.Timeline`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from typing import Literal

from talkface.clock import Clock
from talkface.conversation._answer import Answering
from talkface.conversation._hearing import Hearing
from talkface.conversation._turns import ActiveTurn, TurnRecord, heard_text, same_audio
from talkface.errors import BackendError, TalkfaceError
from talkface.messages import EndOfTurn, Error, Interrupt, Message, VideoFrame
from talkface.output.queue import OutputQueue
from talkface.output.timeline import Timeline
from talkface.priority import StartingTurn, live_turn_starting
from talkface.text.language import detect_language
from talkface.trace import TurnTrace
from talkface.vad.endpoint import Utterance

logger = logging.getLogger(__name__)


class TurnTaking:
    """The turns of one conversation (see the module docstring).

    Args:
        answering: makes each confirmed turn's answer.
        hearing: the final transcripts of the user's utterances.
        timeline: what the listener has heard (where a barge-in cuts).
        outbox: where every message goes.
        clock: time source for the turns' traces.
        language: the conversation's fixed language (None: detected).
        kept_turns: how many of the latest records to keep (None: all).
    """

    def __init__(self, *, answering: Answering, hearing: Hearing, timeline: Timeline,
                 outbox: OutputQueue, clock: Clock, language: str | None,
                 kept_turns: int | None = None) -> None:
        self._answering = answering
        self._hearing = hearing
        self._timeline = timeline
        self._outbox = outbox
        self._clock = clock
        self._language = language
        self.records: deque[TurnRecord] = deque(maxlen=kept_turns)
        """The confirmed turns, in order: the latest ``kept_turns``."""
        self.current: ActiveTurn | None = None
        """The confirmed turn being answered or played (what a barge-in cuts)."""
        self._speculative: ActiveTurn | None = None
        self._last_turn_id = 0

    @property
    def last_turn_id(self) -> int:
        """The number of the latest confirmed turn (0: none yet)."""
        return self._last_turn_id

    # --- starting and confirming -------------------------------------------------------

    def start_typed(self, text: str) -> None:
        """A typed message: a confirmed turn answering it at once."""
        record = self._new_record("text", speculative=False)
        record.transcript = text
        record.language = self._language or detect_language(text)
        turn = ActiveTurn(record=record)
        turn.confirm()
        self.current = turn
        self.records.append(record)
        self._run(turn, text)

    async def speculate(self, utterance: Utterance) -> None:
        """The speech paused: answer it now, holding the output back."""
        await self.cancel_speculative()
        turn = ActiveTurn(record=self._new_record("speech", speculative=True),
                          utterance=utterance)
        self._speculative = turn
        self._run(turn, None)

    async def confirm(self, utterance: Utterance, *, speech_end_clock_ns: int) -> None:
        """The utterance is over: its speculative turn (or a new one) becomes current.

        Args:
            utterance: the whole utterance.
            speech_end_clock_ns: clock time the user's last word ended (the trace's 0).
        """
        speculative, self._speculative = self._speculative, None
        if speculative is not None and speculative.utterance is not None and (
            same_audio(speculative.utterance, utterance)
        ):
            turn = speculative
        else:
            if speculative is not None:
                await _cancel(speculative)
            turn = ActiveTurn(record=self._new_record("speech", speculative=True),
                              utterance=utterance)
            self._run(turn, None)
        self._last_turn_id = turn.record.turn_id  # a confirmed turn takes its number
        trace = turn.record.trace
        trace.origin_ns = speech_end_clock_ns
        trace.mark("vad_end")
        # Work done speculatively during the hangover counts from the moment it could be
        # used: now, when the utterance is confirmed.
        confirmed_ns = trace.marks_ns["vad_end"]
        for stage, at_ns in trace.marks_ns.items():
            trace.marks_ns[stage] = max(at_ns, confirmed_ns)
        self.current = turn
        self.records.append(turn.record)
        turn.confirm()

    async def cancel_speculative(self) -> None:
        """The user went on (or input ended): drop the turn started on the pause."""
        turn, self._speculative = self._speculative, None
        if turn is not None:
            await _cancel(turn)

    async def finish(self) -> None:
        """Input ended: drop speculation, wait until the current answer is made."""
        await self.cancel_speculative()
        turn = self.current
        if turn is not None and turn.task is not None:
            await asyncio.wait([turn.task])

    def tasks(self) -> list[asyncio.Task[None]]:
        """The turns' tasks still running (for shutdown)."""
        return [turn.task for turn in (self.current, self._speculative)
                if turn is not None and turn.task is not None]

    # --- barge-in ------------------------------------------------------------------------

    async def barge_in(self, reason: str, *, at_input_ns: int | None = None,
                       onset_ns: int | None = None) -> None:
        """Cut the answer in progress (being made or still playing) and tell the client.

        Args:
            reason: why ("barge_in": the user spoke; "new_message", "client"...).
            at_input_ns: input time of the end of the audio that cut it (speech only).
            onset_ns: where the VAD placed the start of that speech.
        """
        await self.cancel_speculative()
        turn, self.current = self.current, None
        if turn is None:
            return
        record = turn.record
        heard_ns = self._timeline.heard_ns(record.turn_id)
        making = turn.task is not None and not turn.task.done()
        speech_end_ns = max((s.pts_ns + s.duration_ns for s in turn.speech), default=0)
        playing = heard_ns is not None and heard_ns < speech_end_ns
        if not making and not playing:
            return
        self._timeline.cut(record.turn_id)
        # Its media not yet delivered goes, and so does its end if that still waits in
        # the outbox: the turn's one EndOfTurn is the interrupted one below.
        self._outbox.drop_turn(record.turn_id)
        await self._outbox.put(Interrupt(turn_id=record.turn_id, reason=reason))
        if reason == "barge_in":
            record.interrupted_at_input_ns = at_input_ns
            record.interrupting_onset_ns = onset_ns
        if making:
            await _cancel(turn)
        record.spoken = heard_text(turn.speech, heard_ns)
        record.interrupted = True
        await self._end(turn, interrupted=True, spoken_text=record.spoken)
        self._answering.remember_cut(turn)

    # --- one turn --------------------------------------------------------------------------

    def _new_record(self, source: Literal["speech", "text"], *,
                    speculative: bool) -> TurnRecord:
        """A record with the next turn number (a speculative turn only borrows it)."""
        turn_id = self._last_turn_id + 1
        if not speculative:
            self._last_turn_id = turn_id
        return TurnRecord(turn_id=turn_id, source=source, trace=TurnTrace.start(self._clock))

    def _run(self, turn: ActiveTurn, text: str | None) -> None:
        turn.task = asyncio.create_task(self._answer(turn, text),
                                        name=f"turn-{turn.record.turn_id}")

    async def _answer(self, turn: ActiveTurn, text: str | None) -> None:
        # Until its first frame, the turn holds back render jobs (live before batch).
        with live_turn_starting() as starting:
            await self._answer_starting(turn, text, starting)

    async def _answer_starting(self, turn: ActiveTurn, text: str | None,
                               starting: StartingTurn) -> None:
        record = turn.record
        try:
            if text is None:
                text = await self._final_transcript(turn)
                if text is None:
                    return
            record.trace.mark("asr_final")

            async def emit(message: Message) -> None:
                if isinstance(message, VideoFrame):
                    starting.reached_first_frame()
                await self._emit(turn, message)

            # A speculative turn answers now, its output held: the answer is (partly)
            # made by the time the hangover confirms the utterance.
            await self._answering.answer(turn, text, emit)
            await turn.wait_confirmed()
            async with turn.output_lock:
                await self._release_held(turn)
            self._answering.remember(turn, text)
            await self._end(turn, spoken_text=record.spoken)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, TalkfaceError):
                logger.exception("turn %d failed", record.turn_id)
                exc = BackendError(f"internal error: {type(exc).__name__}: {exc}",
                                   retryable=False)
            record.error = str(exc)
            if turn.confirmed:
                await self.report(exc, record.turn_id)
                await self._end(turn, interrupted=True)

    async def _final_transcript(self, turn: ActiveTurn) -> str | None:
        record = turn.record
        if turn.utterance is None:
            return None
        transcript = await self._hearing.final_for(turn.utterance)
        if transcript is None:
            return None
        record.trace.mark("asr_final")
        record.transcript = transcript.text
        record.language = transcript.language
        await self._emit(turn, dataclasses.replace(transcript, turn_id=record.turn_id,
                                                   is_final=True))
        if not transcript.text.strip():
            await turn.wait_confirmed()
            async with turn.output_lock:
                await self._release_held(turn)
            record.error = "no words recognised"
            await self._outbox.put(Error(
                code="no_speech",
                message=f"heard {turn.utterance.duration_s:.1f} s of sound but no words; "
                "please say that again",
                turn_id=record.turn_id,
            ))
            await self._end(turn)
            return None
        return transcript.text

    async def _emit(self, turn: ActiveTurn, message: Message) -> None:
        if not turn.confirmed:
            turn.held.append(message)  # speculative: kept until the utterance is confirmed
            return
        async with turn.output_lock:
            await self._release_held(turn)
            await self._outbox.put(message)

    async def _release_held(self, turn: ActiveTurn) -> None:
        """Send what the turn made while speculative (call holding its output lock)."""
        held, turn.held = turn.held, []
        for early in held:
            await self._outbox.put(early)

    async def _end(self, turn: ActiveTurn, *, interrupted: bool = False,
                   spoken_text: str = "") -> None:
        turn.end()
        await self._outbox.put(EndOfTurn(turn_id=turn.record.turn_id, interrupted=interrupted,
                                         spoken_text=spoken_text))

    async def report(self, error: TalkfaceError, turn_id: int) -> None:
        """Tell the client about ``error`` (the conversation goes on)."""
        await self._outbox.put(Error(code=error.code, message=str(error),
                                     retryable=error.retryable,
                                     retry_after_s=error.retry_after_s, turn_id=turn_id))


async def _cancel(turn: ActiveTurn) -> None:
    if turn.task is not None and not turn.task.done():
        turn.task.cancel()
        await asyncio.wait([turn.task])
