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

The parts, one idea each: :class:`~talkface.conversation._input.Listener` (the inbox and
what the VAD's events mean), :class:`~talkface.conversation._turn_taking.TurnTaking`
(the turns' states, speculation, barge-in), :class:`~talkface.conversation._answer.Answering`
(what a turn says, and the memory), :class:`~talkface.output.timeline.Timeline` (when
media is due, what was heard, frame numbering). This module is the front that wires them.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkface.clock import Clock, MonotonicClock
from talkface.conversation._answer import Answering
from talkface.conversation._hearing import Hearing
from talkface.conversation._input import (
    EndOfInput,
    InterruptRequest,
    Listener,
    Text,
    WaitForAnswer,
)
from talkface.conversation._turn_taking import TurnTaking
from talkface.conversation._turns import ActiveTurn, TurnRecord
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, frame_pts_ns
from talkface.llm.memory import ConversationMemory
from talkface.messages import AudioChunk, Message
from talkface.output.queue import OutputQueue
from talkface.output.timeline import Timeline
from talkface.runtime import Runtime
from talkface.text.policy import check_language, check_text

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
        fps: video frame rate (None: ``animator.fps`` of the settings).
        kept_turns: how many of the latest turns :attr:`Conversation.turns` keeps
            (None: all, as a CLI's trace needs). A server's sessions keep a bounded
            number, so a session open for a day does not grow with every turn.
    """

    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0
    seed: int | None = None
    persona: str | None = None
    live: bool = True
    fps: int | None = None
    kept_turns: int | None = None

    def __post_init__(self) -> None:
        check_language(self.language)
        if self.kept_turns is not None and self.kept_turns < 1:
            raise ValueError(f"kept_turns must be at least 1, not {self.kept_turns}")


class Conversation:
    """One live conversation (see the module docstring).

    Use as an async context manager; read :meth:`messages` in one task and feed
    :meth:`send_audio` / :meth:`send_text` from another.

    Args:
        runtime: the host whose engines this conversation borrows.
        options: voice, language, avatar, persona...
        clock: the wall clock (tests may pass their own).
        timeline: the conversation's timeline, which its player drives (default: one on
            ``clock``, real time when ``options.live``).
    """

    def __init__(
        self,
        runtime: Runtime,
        options: ConversationOptions | None = None,
        *,
        clock: Clock | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        self.runtime = runtime
        self.options = options or ConversationOptions()
        self.clock = clock or MonotonicClock()
        self.timeline = timeline or Timeline(
            self.clock, fps=self.options.fps or runtime.settings.animator.fps,
            realtime=self.options.live)
        self.seed = self.options.seed if self.options.seed is not None else random.getrandbits(31)
        self._outbox = OutputQueue()
        hearing = Hearing(runtime, language=self.options.language, clock=self.clock,
                          publish=self._outbox.put)
        self._hearing = hearing
        self._answering = Answering(runtime, self.options, self.timeline, self.seed)
        self._turns = TurnTaking(answering=self._answering, hearing=hearing,
                                 timeline=self.timeline, outbox=self._outbox, clock=self.clock,
                                 language=self.options.language,
                                 kept_turns=self.options.kept_turns)
        self._listener = Listener(hearing=hearing, turns=self._turns, outbox=self._outbox,
                                  clock=self.clock,
                                  speech_pad_ms=runtime.settings.vad.speech_pad_ms)
        self._input_task: asyncio.Task[None] | None = None

    @property
    def memory(self) -> ConversationMemory | None:
        """What the LLM is shown of the conversation so far (None before it starts)."""
        return self._answering.memory

    @property
    def turns(self) -> deque[TurnRecord]:
        """The confirmed turns so far, in order (the latest ``kept_turns`` of them)."""
        return self._turns.records

    @property
    def turn_count(self) -> int:
        """How many turns were confirmed, including those no longer kept."""
        return self._turns.last_turn_id

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Conversation:
        await self._answering.open()
        self._input_task = asyncio.create_task(self._listener.run(), name="conversation-input")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop everything this conversation started; its outbox ends."""
        tasks = [self._input_task] if self._input_task is not None else []
        tasks += self._turns.tasks()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._hearing.close()
        self._outbox.close()

    # --- what clients call -----------------------------------------------------------------

    async def send_audio(self, chunk: AudioChunk) -> None:
        """Microphone audio, in order, in real time (any sample rate; mono s16le)."""
        await self._listener.inbox.put(chunk)

    async def send_text(self, text: str) -> None:
        """A typed message: interrupts the avatar if it is talking, then answers.

        Raises:
            BadInput: empty or too long (nothing is queued).
        """
        await self._listener.inbox.put(Text(self.check_text(text)))

    async def interrupt(self, reason: str = "client") -> None:
        """Stop the avatar's answer now (an interrupt button)."""
        await self._listener.inbox.put(InterruptRequest(reason))

    async def end_input(self) -> None:
        """No more input will come; the outbox ends after the last answer."""
        await self._listener.inbox.put(EndOfInput())

    async def wait_for_input(self) -> None:
        """Wait until the input sent so far has been handled (heard, not yet answered):
        a client on virtual time moves its clock only after this."""
        done: asyncio.Future[ActiveTurn | None] = asyncio.get_running_loop().create_future()
        await self._listener.inbox.put(WaitForAnswer(done))
        if self._input_task is not None:
            waiting: list[asyncio.Future[Any]] = [done, self._input_task]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    async def wait_for_answer(self) -> int | None:
        """Wait until the input sent so far is handled and the answer to it is made.

        A script waits here before its next line, as a person waits for the answer
        instead of talking over it.

        Returns:
            The turn that answered it (its :class:`EndOfTurn` is in the outbox), or None
            when nothing needed an answer (no speech was heard).
        """
        done: asyncio.Future[ActiveTurn | None] = asyncio.get_running_loop().create_future()
        await self._listener.inbox.put(WaitForAnswer(done))
        if self._input_task is None:
            return None
        waiting: list[asyncio.Future[Any]] = [done, self._input_task]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
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

    @property
    def fps(self) -> int:
        """The video frame rate of this conversation (its timeline's)."""
        return self.timeline.fps

    def messages(self) -> AsyncIterator[Message]:
        """Everything the avatar says and shows, in order (system messages first)."""
        return self._outbox.__aiter__()

    def check_text(self, text: str) -> str:
        """A typed message stripped, or a clear error (empty, too long)."""
        return check_text(text, limit_chars=self.runtime.settings.limits.max_text_chars)

    # --- idle video ----------------------------------------------------------------------

    async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
        """Frames of the avatar listening (blinking, breathing) for a gap in the video."""
        fps = self.fps
        engine = await self.runtime.animator_engine()
        avatar_id = self.options.avatar_id or await self.runtime.default_avatar()
        silence = np.zeros(int((_IDLE_CHUNK_FRAMES + 4) / fps * ANIMATOR_AUDIO_RATE_HZ), np.float32)
        frames: list[np.ndarray] = []
        for first in range(first_frame_index, first_frame_index + count, _IDLE_CHUNK_FRAMES):
            n = min(_IDLE_CHUNK_FRAMES, first_frame_index + count - first)
            frames.extend(await engine.submit(AnimationRequest(
                avatar_id=avatar_id,
                first_frame_index=first,
                num_frames=n,
                fps=fps,
                audio=silence[: int((n + 4) / fps * ANIMATOR_AUDIO_RATE_HZ)],
                audio_start_ns=frame_pts_ns(first, fps) - 80_000_000,
                seed=self.seed,
            )))
        return frames
