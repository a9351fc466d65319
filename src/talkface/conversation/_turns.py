"""What a conversation knows about each turn: its public record and its live state."""

from __future__ import annotations

import asyncio
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


@dataclass(eq=False)
class ActiveTurn:
    """A turn being answered: its task, its held output, its record."""

    record: TurnRecord
    utterance: Utterance | None = None
    task: asyncio.Task[None] | None = None
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[Message] = field(default_factory=list)
    speech: list[SpeechAudio] = field(default_factory=list)
    recorded: bool = False  # the answer is in the conversation memory
    ended: bool = False  # its EndOfTurn is sent (one per turn)


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
