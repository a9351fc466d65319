"""A live conversation: microphone audio and typed text in, the avatar's answers out.

One :class:`Conversation` is one person talking with the avatar (``talkface chat``, a
browser session of ``talkface serve``). It borrows the runtime's shared engines and
owns only state: its VAD stream, the utterance being transcribed, its memory, the turn
being answered, its outbox.

The loop, per utterance:

1. The VAD marks the start of speech. If the avatar is answering, that is a
   **barge-in**: the answer is cancelled at once (LLM, TTS and animator requests are
   dropped, queued media thrown away, an :class:`Interrupt` sent), and what the listener
   had heard of it goes into the history, marked interrupted.
2. While the user speaks, partial transcripts are sent.
3. When the speech pauses, the final transcript is computed **speculatively**, and the
   reply is started on it: LLM, sentences, TTS and frames, all held back.
4. If the pause lasts the hangover, the utterance is over: the held reply is released
   (often its first frames are already made). If the user goes on instead, the
   speculative reply is cancelled and the next pause starts a new one.

A typed message starts a turn at once. A turn ends with one :class:`EndOfTurn`,
``interrupted`` when it was cut: an end still waiting in the outbox when the listener
cuts in is replaced by the interrupted one (a player that reads ends ahead of its media,
as :class:`~talkface.api.realtime.media.AvatarMedia` does, keeps only the interrupted
one). Errors become :class:`Error` messages and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from talkface.clock import Clock, MonotonicClock
from talkface.conversation._hearing import Hearing
from talkface.conversation._turns import ActiveTurn, TurnRecord, heard_text, same_audio
from talkface.engines import Engine
from talkface.errors import BackendError, TalkfaceError
from talkface.face.base import AUDIO_RATE_HZ, AnimationRequest, frame_pts_ns
from talkface.faq.service import answer_from_faq
from talkface.llm.memory import ConversationMemory
from talkface.llm.routing import route_answer
from talkface.messages import (
    NS_PER_S,
    AudioChunk,
    EndOfTurn,
    Error,
    Interrupt,
    Message,
    Sentence,
    SpeechAudio,
)
from talkface.output.playout import Playout
from talkface.output.queue import OutputQueue
from talkface.pipeline.reply import ReplyText, reply_sentences, with_language_hint
from talkface.pipeline.speak import SpeakContext, speak_turn
from talkface.runtime import Runtime
from talkface.text.language import detect_language
from talkface.text.policy import check_language, check_text, choose_voice
from talkface.trace import TurnTrace
from talkface.tts.base import SynthesisRequest, VoiceInfo
from talkface.vad.endpoint import (
    SpeechDiscarded,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    Utterance,
)

logger = logging.getLogger(__name__)

_INBOX_SIZE = 512
_TURN_GAP_FRAMES = 12  # offline: half a second of idle face between answers
_IDLE_CHUNK_FRAMES = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationOptions:
    """How a conversation sounds, looks and keeps time.

    Attributes:
        voice: voice name (None: the default voice of each sentence's language).
        language: "en" or "zh" (None: detected per utterance and per sentence).
        avatar_id: a prepared avatar (None: the default portrait).
        speed: speaking rate.
        seed: seeds blinks and head motion (None: random).
        persona: system prompt (None: the LLM settings' persona).
        live: True when input arrives in real time (a microphone, a file played as
            one); False lays answers back to back on the timeline (scripts).
    """

    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0
    seed: int | None = None
    persona: str | None = None
    live: bool = True

    def __post_init__(self) -> None:
        check_language(self.language)


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _WaitForAnswer:
    done: asyncio.Future[ActiveTurn | None]


@dataclass(frozen=True, slots=True)
class _Interrupt:
    reason: str


@dataclass(frozen=True, slots=True)
class _EndOfInput:
    pass


class Conversation:
    """One live conversation (see the module docstring).

    Use as an async context manager; read :meth:`messages` in one task and feed
    :meth:`send_audio` / :meth:`send_text` from another.

    Args:
        runtime: the host whose engines this conversation borrows.
        options: voice, language, avatar, persona...
        clock: the wall clock (tests may pass their own).
        playout: the player that delivers this conversation's media (it knows what the
            listener has heard, which is where a barge-in cuts).
    """

    def __init__(
        self,
        runtime: Runtime,
        options: ConversationOptions | None = None,
        *,
        clock: Clock | None = None,
        playout: Playout | None = None,
    ) -> None:
        self.runtime = runtime
        self.options = options or ConversationOptions()
        self.clock = clock or MonotonicClock()
        self.playout = playout or Playout(self.clock, realtime=self.options.live)
        self.seed = self.options.seed if self.options.seed is not None else random.getrandbits(31)
        self.turns: list[TurnRecord] = []
        self._outbox = OutputQueue()
        self._inbox: asyncio.Queue[
            AudioChunk | _Text | _Interrupt | _WaitForAnswer | _EndOfInput
        ] = asyncio.Queue(_INBOX_SIZE)
        self._memory: ConversationMemory | None = None
        self._hearing = Hearing(self.runtime, language=self.options.language, clock=self.clock,
                                publish=self._outbox.put)
        self._turn: ActiveTurn | None = None
        self._speculative: ActiveTurn | None = None
        self._turn_counter = 0
        self._next_frame_index = 0
        self._start_ns = self.clock.now_ns()
        self._input_origin_ns: int | None = None  # clock time of input pts 0
        self._input_task: asyncio.Task[None] | None = None
        self._chunk_end_ns: int | None = None  # input time of the chunk being handled
        self._onset_ns: int | None = None  # the latest speech onset the VAD reported

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Conversation:
        llm = await self.runtime.llm_backend()
        settings = self.runtime.settings.llm
        self._memory = ConversationMemory(
            self.options.persona or settings.persona,
            budget_tokens=settings.context_tokens,
            reply_tokens=settings.max_reply_tokens,
            count_tokens=llm.count_tokens,
        )
        await self.runtime.prime_llm(self._memory.persona)
        self._input_task = asyncio.create_task(self._input_loop(), name="conversation-input")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop everything this conversation started; its outbox ends."""
        tasks = [self._input_task] if self._input_task is not None else []
        for turn in (self._turn, self._speculative):
            if turn is not None and turn.task is not None:
                tasks.append(turn.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._hearing.close()
        self._outbox.close()

    # --- what clients call -----------------------------------------------------------------

    async def send_audio(self, chunk: AudioChunk) -> None:
        """Microphone audio, in order, in real time (any sample rate; mono s16le)."""
        await self._inbox.put(chunk)

    async def send_text(self, text: str) -> None:
        """A typed message: interrupts the avatar if it is talking, then answers.

        Raises:
            BadInput: empty or too long (nothing is queued).
        """
        await self._inbox.put(_Text(self.check_text(text)))

    async def interrupt(self, reason: str = "client") -> None:
        """Stop the avatar's answer now (an interrupt button)."""
        await self._inbox.put(_Interrupt(reason))

    async def end_input(self) -> None:
        """No more input will come; the outbox ends after the last answer."""
        await self._inbox.put(_EndOfInput())

    async def wait_for_answer(self) -> int | None:
        """Wait until the input sent so far is handled and the answer to it is made.

        A script waits here before its next line, as a person waits for the answer
        instead of talking over it.

        Returns:
            The turn that answered it (its :class:`EndOfTurn` is in the outbox), or None
            when nothing needed an answer (no speech was heard).
        """
        done: asyncio.Future[ActiveTurn | None] = asyncio.get_running_loop().create_future()
        await self._inbox.put(_WaitForAnswer(done))
        if self._input_task is None:
            return None
        await asyncio.wait([done, self._input_task], return_when=asyncio.FIRST_COMPLETED)
        turn = done.result() if done.done() else None
        if turn is None:
            return None
        if turn.task is not None:
            await asyncio.wait([turn.task])
        return turn.record.turn_id if turn.ended else None

    async def finished(self) -> None:
        """Wait until the input has ended and the last answer is made."""
        if self._input_task is not None:
            await asyncio.wait([self._input_task])

    def messages(self) -> AsyncIterator[Message]:
        """Everything the avatar says and shows, in order (system messages first)."""
        return self._outbox.__aiter__()

    def check_text(self, text: str) -> str:
        """A typed message stripped, or a clear error (empty, too long)."""
        return check_text(text, limit_chars=self.runtime.settings.limits.max_text_chars)

    # --- input ---------------------------------------------------------------------------

    async def _input_loop(self) -> None:
        while True:
            item = await self._inbox.get()
            try:
                if isinstance(item, AudioChunk):
                    await self._on_audio(item)
                elif isinstance(item, _Text):
                    await self._barge_in("new_message")
                    self._start_turn(self._new_record("text"), text=item.text)
                elif isinstance(item, _Interrupt):
                    await self._barge_in(item.reason)
                elif isinstance(item, _WaitForAnswer):
                    if not item.done.done():
                        item.done.set_result(self._turn)
                else:
                    await self._on_end_of_input()
                    return
            except TalkfaceError as exc:
                await self._report(exc, self._turn_counter)

    async def _on_audio(self, chunk: AudioChunk) -> None:
        self._chunk_end_ns = chunk.pts_ns + chunk.duration_ns
        if self._input_origin_ns is None:
            self._input_origin_ns = self.clock.now_ns() - chunk.pts_ns
        for event in await self._hearing.push(chunk):
            await self._on_vad_event(event)

    async def _on_vad_event(self, event: Any) -> None:
        if isinstance(event, SpeechStart):
            self._onset_ns = event.pts_ns
            await self._barge_in("barge_in")
            await self._hearing.new_utterance(self._turn_counter + 1)
        elif isinstance(event, SpeechPause):
            self._hearing.pause(event.utterance)
            await self._cancel_speculative()
            record = self._new_record("speech", speculative=True)
            self._speculative = self._start_turn(record, utterance=event.utterance)
        elif isinstance(event, SpeechEnd):
            await self._on_speech_end(event.utterance)
        elif isinstance(event, SpeechDiscarded):
            await self._cancel_speculative()
            await self._hearing.close()

    async def _on_speech_end(self, utterance: Utterance) -> None:
        await self._hearing.stop_partials()
        speculative, self._speculative = self._speculative, None
        if speculative is not None and speculative.utterance is not None and (
            same_audio(speculative.utterance, utterance)
        ):
            turn = speculative
        else:
            if speculative is not None:
                await self._cancel_turn(speculative)
            turn = self._start_turn(self._new_record("speech", speculative=True),
                                    utterance=utterance)
        self._turn_counter = turn.record.turn_id  # a confirmed turn takes its number
        # The trace starts at the end of the user's speech (the last speech window).
        pad_ns = int(self.runtime.settings.vad.speech_pad_ms * 1e6)
        trace = turn.record.trace
        trace.origin_ns = self._input_time(utterance.end_pts_ns - pad_ns)
        trace.mark("vad_end")
        # Work done speculatively during the hangover counts from the moment it could be
        # used: now, when the utterance is confirmed.
        confirmed_ns = trace.marks_ns["vad_end"]
        for stage, at_ns in trace.marks_ns.items():
            trace.marks_ns[stage] = max(at_ns, confirmed_ns)
        self._turn = turn
        turn.confirmed.set()

    async def _on_end_of_input(self) -> None:
        for event in self._hearing.flush():
            await self._on_vad_event(event)
        await self._cancel_speculative()
        if self._hearing.started and not self._hearing.heard_anything and not self.turns:
            await self._outbox.put(Error(
                code="no_speech",
                message="no speech was heard in the audio; check the microphone or file",
                turn_id=self._turn_counter,
            ))
        if self._turn is not None and self._turn.task is not None:
            await asyncio.wait([self._turn.task])
        await self._hearing.close()
        self._outbox.close()

    def _input_time(self, pts_ns: int) -> int:
        """Clock time at which input time ``pts_ns`` was spoken (input arrives in real time)."""
        origin = self._input_origin_ns if self._input_origin_ns is not None else self._start_ns
        return origin + pts_ns

    # --- turns ---------------------------------------------------------------------------

    def _new_record(self, source: Literal["speech", "text"], *,
                    speculative: bool = False) -> TurnRecord:
        """A record with the next turn number (a speculative turn only borrows it)."""
        turn_id = self._turn_counter + 1
        if not speculative:
            self._turn_counter = turn_id
        return TurnRecord(turn_id=turn_id, source=source, trace=TurnTrace.start(self.clock))

    def _start_turn(self, record: TurnRecord, *, text: str | None = None,
                    utterance: Utterance | None = None) -> ActiveTurn:
        turn = ActiveTurn(record=record, utterance=utterance)
        if text is not None:
            record.transcript = text
            record.language = self.options.language or detect_language(text)
            turn.confirmed.set()
            self._turn = turn
        turn.task = asyncio.create_task(self._run_turn(turn, text), name=f"turn-{record.turn_id}")
        return turn

    async def _emit(self, turn: ActiveTurn, message: Message) -> None:
        if isinstance(message, SpeechAudio):
            turn.speech.append(message)
        if not turn.confirmed.is_set():
            turn.held.append(message)  # speculative: kept until the utterance is confirmed
            return
        if turn.held:
            held, turn.held = turn.held, []
            for early in held:
                await self._outbox.put(early)
        await self._outbox.put(message)

    async def _run_turn(self, turn: ActiveTurn, text: str | None) -> None:
        record = turn.record
        trace = record.trace
        try:
            if text is None:
                text = await self._final_transcript(turn)
                if text is None:
                    return
            await turn.confirmed.wait()
            if record.source == "text":
                self.turns.append(record)
            trace.mark("asr_final")
            await self._answer(turn, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, TalkfaceError):
                logger.exception("turn %d failed", record.turn_id)
                exc = BackendError(f"internal error: {type(exc).__name__}: {exc}",
                                   retryable=False)
            record.error = str(exc)
            if turn.confirmed.is_set():
                await self._report(exc, record.turn_id)
                await self._end_turn(turn, interrupted=True)

    async def _final_transcript(self, turn: ActiveTurn) -> str | None:
        record = turn.record
        if turn.utterance is None:
            return None
        transcript = await self._hearing.final_for(turn.utterance)
        if transcript is None:
            return None
        record.trace.mark("asr_final")
        await turn.confirmed.wait()
        self.turns.append(record)
        await self._outbox.put(dataclasses.replace(transcript, turn_id=record.turn_id,
                                                   is_final=True))
        record.transcript = transcript.text
        record.language = transcript.language
        if not transcript.text.strip():
            record.error = "no words recognised"
            await self._outbox.put(Error(
                code="no_speech",
                message=f"heard {turn.utterance.duration_s:.1f} s of sound but no words; "
                "please say that again",
                turn_id=record.turn_id,
            ))
            await self._end_turn(turn)
            return None
        return transcript.text

    async def _answer(self, turn: ActiveTurn, text: str) -> None:
        record = turn.record
        runtime = self.runtime
        settings = runtime.settings
        assert self._memory is not None
        # A FAQ hit is recited along the reply path below, with no LLM call.
        faq = await answer_from_faq(settings.faq, text)
        routed = await route_answer(runtime, text, faq.answer if faq else None)
        record.route = routed.route
        messages = with_language_hint(
            self._memory.prompt(text),
            self.options.language or record.language or detect_language(text),
        )
        llm = routed.as_engine()
        reply = ReplyText()
        language = self.options.language
        if self.options.voice is None and language is None:
            language = None  # each sentence picks its own voice by its language

        async def emit(message: Message) -> None:
            await self._emit(turn, message)

        sentences = reply_sentences(
            llm, messages,
            max_tokens=settings.llm.max_reply_tokens,
            temperature=settings.llm.temperature,
            language=language,
            turn_id=record.turn_id,
            trace=record.trace,
            reply=reply,
            on_delta=emit,
        )
        ctx = SpeakContext(
            voice_for=self._voice_for,
            animator=await runtime.animator_engine(),
            avatar_id=self.options.avatar_id or await runtime.default_avatar(),
            fps=settings.animator.fps,
            seed=self.seed,
            speed=self.options.speed,
        )
        try:
            spoken = await speak_turn(
                sentences, ctx,
                turn_id=record.turn_id,
                first_frame_index=self._first_frame_index(),
                emit=emit,
                trace=record.trace,
            )
        finally:
            record.reply = reply.text.strip()
            record.route, record.fallback = routed.route, routed.fallback
            if reply.stats is not None:
                record.prompt_tokens = reply.stats.prompt_tokens
                record.evaluated_prompt_tokens = reply.stats.evaluated_prompt_tokens
        self._next_frame_index = spoken.end_frame_index
        # What was said is the sentences as spoken (emotion tags off); the memory keeps
        # the reply as generated, so the next turn's prompt starts with the tokens the
        # LLM's cache holds.
        record.spoken = spoken.spoken_text
        self._memory.record(text, record.reply)
        turn.recorded = True
        await self._end_turn(turn, spoken_text=record.spoken)

    async def _end_turn(self, turn: ActiveTurn, *, interrupted: bool = False,
                        spoken_text: str = "") -> None:
        turn.ended = True
        await self._outbox.put(EndOfTurn(turn_id=turn.record.turn_id, interrupted=interrupted,
                                         spoken_text=spoken_text))

    def _first_frame_index(self) -> int:
        if self.options.live:
            # Frames follow the wall clock, so idle frames and answers join up.
            elapsed_ns = self.clock.now_ns() - self._start_ns
            live_index = int(elapsed_ns * self.runtime.settings.animator.fps // NS_PER_S)
            return max(live_index, self._next_frame_index)
        if self._next_frame_index == 0:
            return 0
        return self._next_frame_index + _TURN_GAP_FRAMES

    async def _voice_for(
        self, sentence: Sentence
    ) -> tuple[VoiceInfo, Engine[SynthesisRequest, SpeechAudio]]:
        language = self.options.language or sentence.language or detect_language(sentence.text)
        # The same check as `talkface say`: a voice never reads a language it cannot speak.
        voice = choose_voice(self.runtime.resolve_voice, self.options.voice, language)
        return voice, await self.runtime.tts_engine(voice)

    # --- barge-in --------------------------------------------------------------------------

    async def _barge_in(self, reason: str) -> None:
        """Cut the answer in progress (being made or still playing) and tell the client."""
        await self._cancel_speculative()
        turn, self._turn = self._turn, None
        if turn is None:
            return
        record = turn.record
        heard_ns = self.playout.position_ns(record.turn_id)
        making = turn.task is not None and not turn.task.done()
        speech_end_ns = max((s.pts_ns + s.duration_ns for s in turn.speech), default=0)
        playing = heard_ns is not None and heard_ns < speech_end_ns
        if not making and not playing:
            return
        self.playout.cut(record.turn_id)
        # Its media not yet delivered goes, and so does its end if that still waits in
        # the outbox: the turn's one EndOfTurn is the interrupted one below.
        self._outbox.drop_turn(record.turn_id)
        await self._outbox.put(Interrupt(turn_id=record.turn_id, reason=reason))
        if reason == "barge_in":
            record.interrupted_at_input_ns = self._chunk_end_ns
            record.interrupting_onset_ns = self._onset_ns
        if making:
            turn.task.cancel()
            await asyncio.wait([turn.task])
        record.spoken = heard_text(turn.speech, heard_ns)
        record.interrupted = True
        await self._end_turn(turn, interrupted=True, spoken_text=record.spoken)
        if self._memory is not None and record.transcript:
            if turn.recorded:
                self._memory.amend_last(record.spoken, interrupted=True)
            else:
                self._memory.record(record.transcript, record.spoken, interrupted=True)

    async def _cancel_speculative(self) -> None:
        turn, self._speculative = self._speculative, None
        if turn is not None:
            await self._cancel_turn(turn)

    async def _cancel_turn(self, turn: ActiveTurn) -> None:
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
            await asyncio.wait([turn.task])

    async def _report(self, error: TalkfaceError, turn_id: int) -> None:
        await self._outbox.put(Error(code=error.code, message=str(error),
                                     retryable=error.retryable,
                                     retry_after_s=error.retry_after_s, turn_id=turn_id))

    # --- idle video ----------------------------------------------------------------------

    async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
        """Frames of the avatar listening (blinking, breathing) for a gap in the video."""
        fps = self.runtime.settings.animator.fps
        engine = await self.runtime.animator_engine()
        frames: list[np.ndarray] = []
        for first in range(first_frame_index, first_frame_index + count, _IDLE_CHUNK_FRAMES):
            n = min(_IDLE_CHUNK_FRAMES, first_frame_index + count - first)
            seconds = (n + 4) / fps
            frames.extend(await engine.submit(AnimationRequest(
                avatar_id=self.options.avatar_id or await self.runtime.default_avatar(),
                first_frame_index=first,
                num_frames=n,
                fps=fps,
                audio=np.zeros(int(seconds * AUDIO_RATE_HZ), np.float32),
                audio_start_ns=frame_pts_ns(first, fps) - 80_000_000,
                seed=self.seed,
            )))
        return frames
