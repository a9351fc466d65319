"""What a conversation knows about each turn: its public record and its live state."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Literal

from talkface.messages import Message, SpeechAudio
from talkface.trace import TurnTrace
from talkface.vad.endpoint import Utterance


@dataclass(slots=True)
class TurnRecord:
    """What happened in one turn (for traces, reports and tests)."""

    turn_id: int
    source: Literal["speech", "text"]
    trace: TurnTrace
    transcript: str = ""
    language: str | None = None
    """The user's language: as the ASR heard it (speech) or detected from the words (text)."""
    reply: str = ""
    spoken: str = ""
    interrupted: bool = False
    error: str | None = None
    evaluated_prompt_tokens: int | None = None
    prompt_tokens: int = 0
    interrupted_at_input_ns: int | None = None
    """Input time of the end of the chunk whose speech cut this turn off (barge-in)."""
    interrupting_onset_ns: int | None = None
    """Where the VAD placed the start of that speech."""
    route: Literal["faq", "small", "large"] | None = None
    """Who answered: the FAQ cache, the small (embedded) LLM or the large LLM server;
    None before answering."""
    fallback: bool = False
    """The policy sent the question to the large LLM, which could not be reached, so the
    small one answered (``route`` is then "small")."""


class TurnState(enum.Enum):
    """Where a turn being answered is in its life (each moves only forward)."""

    SPECULATIVE = "speculative"
    """Started on a pause in the user's speech; its output is held back until the
    utterance is confirmed over (or the turn is dropped when the user goes on)."""
    CONFIRMED = "confirmed"
    """The user finished speaking (or typed it): its output flows to the outbox."""
    ANSWERED = "answered"
    """Its reply is in the conversation memory and its one EndOfTurn is sent (its media
    may still be playing: a barge-in amends the memory)."""
    ENDED = "ended"
    """Its one EndOfTurn is sent without an answer in memory (no words, an error, cut
    while being made)."""


@dataclass(eq=False)
class ActiveTurn:
    """A turn being answered: its state, its task, its held output, its record."""

    record: TurnRecord
    utterance: Utterance | None = None
    task: asyncio.Task[None] | None = None
    state: TurnState = TurnState.SPECULATIVE
    held: list[Message] = field(default_factory=list)
    """Output made while speculative, sent when the turn is confirmed."""
    speech: list[SpeechAudio] = field(default_factory=list)
    """Its speech so far (what a barge-in measures "heard" against)."""
    output_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held output is released before anything newer goes out (two tasks emit)."""
    _confirmed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ended(self) -> bool:
        """Its EndOfTurn is sent (one per turn)."""
        return self.state in (TurnState.ANSWERED, TurnState.ENDED)

    @property
    def confirmed(self) -> bool:
        """Its output may flow."""
        return self.state is not TurnState.SPECULATIVE

    def confirm(self) -> None:
        """The user is done: release the held output."""
        if self.state is TurnState.SPECULATIVE:
            self.state = TurnState.CONFIRMED
            self._confirmed.set()

    async def wait_confirmed(self) -> None:
        """Wait until :meth:`confirm` (a dropped speculative turn is cancelled instead)."""
        await self._confirmed.wait()

    def answered(self) -> None:
        """Its reply went into the conversation memory."""
        self.state = TurnState.ANSWERED

    def end(self) -> None:
        """Its EndOfTurn is being sent; an answered turn stays answered."""
        if self.state is not TurnState.ANSWERED:
            self.state = TurnState.ENDED


def same_audio(a: Utterance, b: Utterance) -> bool:
    """Whether two utterances carry the same audio (a confirmed speculative turn)."""
    return a.start_pts_ns == b.start_pts_ns and a.end_pts_ns == b.end_pts_ns and len(
        a.audio
    ) == len(b.audio)


def heard_text(speech: list[SpeechAudio], heard_ns: int | None) -> str:
    """The sentences the listener had started hearing when the answer was cut."""
    if heard_ns is None:
        return ""
    return " ".join(s.text for s in speech if s.pts_ns <= heard_ns and s.text)
