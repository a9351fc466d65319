"""``talkface chat``: a conversation from a file, a line of text or a script.

Spoken input is played into the conversation in real time, as a microphone would, so
every latency in the waterfall is what a live user would see. Each line of a script
waits for the answer to the one before, as a person would. The avatar's answers are
recorded into one MP4, with the listening face filling the time between them.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkface.audio import float32_to_pcm16
from talkface.audio_file import load_audio_file
from talkface.clock import MonotonicClock
from talkface.commands._common import err_console, out_console
from talkface.config import Settings
from talkface.conversation import Conversation, ConversationOptions, TurnRecord
from talkface.engines import ModelThread
from talkface.errors import BadInput
from talkface.face.portrait import load_portrait
from talkface.faq.service import load_faq
from talkface.messages import (
    NS_PER_S,
    AudioChunk,
    EndOfTurn,
    Error,
    Interrupt,
    SpeechAudio,
    Transcript,
    VideoFrame,
)
from talkface.output.mp4 import MP4Writer, check_output_path
from talkface.runtime import Runtime
from talkface.text.policy import check_language, check_text, choose_voice
from talkface.trace import STAGES

FEED_CHUNK_MS = 32
TRAILING_SILENCE_S = 1.0  # after the last word, the microphone stays open this long
MAX_SCRIPT_TURNS = 100


@dataclass(frozen=True, slots=True)
class ScriptTurn:
    """One line of a script: typed text, or a spoken turn from an audio file."""

    text: str | None = None
    audio: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatOptions:
    """Everything ``talkface chat`` was asked to do."""

    turns: tuple[ScriptTurn, ...]
    output: Path | None
    trace: Path | None = None
    voice: str | None = None
    language: str | None = None
    portrait: Path | None = None
    persona: str | None = None
    seed: int | None = None
    quiet: bool = False


def read_script(path: Path) -> tuple[ScriptTurn, ...]:
    """A dialogue script: one user turn per line; ``@file.wav`` is a spoken turn.

    Blank lines and lines starting with ``#`` are ignored.

    Raises:
        BadInput: missing, unreadable, empty, too long, or naming a missing audio file.
    """
    if not path.is_file():
        raise BadInput(f"script {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"script {path} is not UTF-8 text") from None
    turns = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            audio = (path.parent / line[1:].strip()).resolve()
            if not audio.is_file():
                raise BadInput(
                    f"script {path.name} line {number}: audio file {audio} does not exist"
                )
            turns.append(ScriptTurn(audio=audio))
        else:
            turns.append(ScriptTurn(text=line))
    if not turns:
        raise BadInput(f"script {path} has no turns (one user message per line)")
    if len(turns) > MAX_SCRIPT_TURNS:
        raise BadInput(f"script {path} has {len(turns)} turns; the limit is {MAX_SCRIPT_TURNS}")
    return tuple(turns)


@dataclass(slots=True)
class _Recorder:
    """Writes the conversation's media to an MP4 and shows what is said."""

    conversation: Conversation
    writer: MP4Writer | None
    encoder: ModelThread
    quiet: bool
    last_ended: int = 0  # the highest turn id whose end was played
    _ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_ended(self, turn_id: int) -> None:
        """Wait until turn ``turn_id`` (or a later one) has ended and been played."""
        while self.last_ended < turn_id:
            self._ended.clear()
            await self._ended.wait()

    async def run(self) -> None:
        async for message in self.conversation.messages():
            if isinstance(message, (SpeechAudio, VideoFrame)):
                await self.conversation.timeline.wait_due(message)
                await self._write(message)
            elif isinstance(message, Transcript):
                if message.is_final and not self.quiet:
                    out_console.print(f"[bold]you:[/] {message.text}", soft_wrap=True)
            elif isinstance(message, Interrupt):
                if not self.quiet:
                    out_console.print("[yellow](you interrupted the avatar)[/]")
            elif isinstance(message, Error):
                err_console.print(f"[yellow]{message.code}:[/] {message.message}", soft_wrap=True)
            elif isinstance(message, EndOfTurn):
                if not self.quiet:
                    said = message.spoken_text or "(nothing)"
                    mark = " [dim](interrupted)[/]" if message.interrupted else ""
                    out_console.print(f"[bold]avatar:[/] {said}{mark}", soft_wrap=True)
                self.last_ended = max(self.last_ended, message.turn_id)
                self._ended.set()

    async def _write(self, message: SpeechAudio | VideoFrame) -> None:
        writer = self.writer
        if writer is None:
            return
        if isinstance(message, SpeechAudio):
            await self.encoder.run(writer.write_speech, message)
            return
        gap = message.index - writer.frames_written
        if gap > 0:
            # The listening face fills the time between answers.
            for image in await self.conversation.idle_frames(writer.frames_written, gap):
                index = writer.frames_written
                idle = VideoFrame(image=image, pts_ns=index * NS_PER_S // writer.fps, index=index,
                                  speaking=False)
                await self.encoder.run(writer.write_frame, idle)
        await self.encoder.run(writer.write_frame, message)


async def _feed_audio(conversation: Conversation, path: Path, clock: MonotonicClock,
                      origin_ns: int, offset_ns: int, settings: Settings) -> int:
    """Play a file into the conversation in real time; returns the input time it ended."""
    samples, _ = await asyncio.to_thread(load_audio_file, path)
    rate = 16_000
    padded = np.concatenate([samples, np.zeros(int(TRAILING_SILENCE_S * rate), np.float32)])
    step = rate * FEED_CHUNK_MS // 1000
    for start in range(0, len(padded), step):
        pts_ns = offset_ns + start * NS_PER_S // rate
        delay_ns = origin_ns + pts_ns - clock.now_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)
        chunk = padded[start : start + step]
        await conversation.send_audio(AudioChunk(pcm=float32_to_pcm16(chunk), sample_rate_hz=rate,
                                                 pts_ns=pts_ns))
    del settings
    return offset_ns + len(padded) * NS_PER_S // rate


async def _drive(conversation: Conversation, recorder: _Recorder, turns: tuple[ScriptTurn, ...],
                 clock: MonotonicClock, settings: Settings) -> None:
    """Give the conversation its input, one turn after another.

    Each line waits until the answer to the one before has been made and played: a
    line spoken over the answer would interrupt it.
    """
    origin_ns = clock.now_ns()
    input_ns = 0
    for turn in turns:
        if turn.audio is not None:
            # Spoken turns continue the same microphone stream.
            input_ns = max(input_ns, clock.now_ns() - origin_ns)
            input_ns = await _feed_audio(conversation, turn.audio, clock, origin_ns, input_ns,
                                         settings)
        else:
            assert turn.text is not None
            await conversation.send_text(turn.text)
        answered = await conversation.wait_for_answer()
        if answered is not None:
            await recorder.wait_ended(answered)
    await conversation.end_input()


async def run_chat(options: ChatOptions, settings: Settings) -> list[TurnRecord]:
    """Hold the conversation and record it; returns the turns' records.

    Raises:
        BadInput: an empty or too long message, an unsupported language, a bad audio
            file (all found before any model loads).
    """
    check_language(options.language)
    for turn in options.turns:
        if turn.text is not None:
            check_text(turn.text, limit_chars=settings.limits.max_text_chars)
    output = check_output_path(options.output) if options.output else None
    spoken = any(turn.audio is not None for turn in options.turns)
    for turn in options.turns:
        if turn.audio is not None:
            await asyncio.to_thread(load_audio_file, turn.audio)  # refuse bad files up front
    clock = MonotonicClock()
    async with Runtime(settings) as runtime:
        if options.language is None:
            voice = runtime.resolve_voice(options.voice, "en")
        else:
            voice = choose_voice(runtime.resolve_voice, options.voice, options.language)
        started = time.perf_counter()
        status = None if options.quiet else err_console.status("loading models")
        if status is not None:
            status.start()
        try:
            if spoken:
                await runtime.vad()
                await runtime.asr_engine()
            await runtime.llm_engine()
            await load_faq(settings.faq)  # the FAQ embedder and the FAQ, once
            await runtime.warm_up(voices=(voice,))
            avatar_id = None
            if options.portrait is not None:
                avatar_id = await runtime.prepare_avatar(load_portrait(options.portrait))
        finally:
            if status is not None:
                status.stop()
        if not options.quiet:
            err_console.print(f"[dim]models ready in {time.perf_counter() - started:.1f} s[/]")
        conversation = Conversation(runtime, ConversationOptions(
            voice=options.voice, language=options.language, avatar_id=avatar_id,
            seed=options.seed, persona=options.persona, live=spoken,
        ), clock=clock)
        settings_animator = settings.animator
        writer = (MP4Writer(output, fps=settings_animator.fps, size_px=settings_animator.size_px,
                            settings=settings.output) if output else None)
        encoder = ModelThread("encoder")
        try:
            async with conversation:
                recorder = _Recorder(conversation, writer, encoder, options.quiet)
                async with asyncio.TaskGroup() as group:
                    group.create_task(recorder.run())
                    group.create_task(
                        _drive(conversation, recorder, options.turns, clock, settings)
                    )
            if writer is not None:
                if writer.frames_written == 0:
                    writer.abort()
                    raise BadInput("the avatar said nothing, so no video was written")
                written = await encoder.run(writer.close)
                if not options.quiet:
                    out_console.print(f"wrote {written.path} ({written.duration_s:.1f} s)")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            encoder.shutdown()
    turns = list(conversation.turns)
    if options.trace is not None:
        write_trace(turns, options.trace)
    if not options.quiet:
        print_waterfall(turns)
    return turns


def trace_document(turns: list[TurnRecord]) -> dict[str, object]:
    """The ``--trace`` JSON document."""
    return {
        "turns": [
            {
                "turn": turn.turn_id,
                "source": turn.source,
                "transcript": turn.transcript,
                "language": turn.language,
                "reply": turn.spoken if turn.interrupted else turn.reply,
                "interrupted": turn.interrupted,
                "error": turn.error,
                "route": turn.route,
                "fallback": turn.fallback,
                "latency_ms": turn.trace.as_dict(),
            }
            for turn in turns
        ]
    }


def write_trace(turns: list[TurnRecord], path: Path) -> None:
    """Write the turns' timing traces to ``path`` as JSON."""
    path.write_text(json.dumps(trace_document(turns), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def print_waterfall(turns: list[TurnRecord]) -> None:
    """Each turn's latencies, stage by stage, with a bar per stage."""
    for turn in turns:
        latency = turn.trace.as_dict()
        if not latency:
            continue
        out_console.print(f"[bold]turn {turn.turn_id}[/] latency from end of user "
                          f"{'speech' if turn.source == 'speech' else 'message'}:")
        scale = max(max(latency.values()), 1.0)
        for stage in STAGES:
            if stage in latency:
                bar = "█" * max(1, round(30 * latency[stage] / scale))
                out_console.print(f"  {stage:18s} {latency[stage]:7.0f} ms  [cyan]{bar}[/]")
