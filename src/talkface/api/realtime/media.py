"""The avatar's media as one endless live stream: speech when it talks, a listening face when not.

A conversation makes media in bursts, faster than real time, turn by turn. A live
transport needs something else: a video frame every ``1/fps`` and audio every few
milliseconds, for as long as the session lasts. :class:`AvatarMedia` sits between them:

* the **pump** reads the conversation's messages as they come and places each speech
  audio and video frame at the wall-clock time its turn's
  conversation's :class:`~talkface.output.timeline.Timeline` says it is due (the
  timeline anchors each turn when its first media is placed, so it knows what the
  listener has heard when a barge-in cuts, and where the listening face resumes);
* the transport's clock (a WebRTC track's ``recv``, a WebSocket ticker) asks for "the
  frame for time t" and "audio samples n..n+k"; between turns it gets idle frames
  and silence: the avatar's shared looping :class:`~talkface.api.realtime.idle_clip.IdleClip`
  once it is loaded (no animator, and no encoder: :meth:`AvatarMedia.idle_loop_frame`
  says which frame of the loop's encodings is shown),
  until then frames rendered ahead with the conversation's ``idle_frames``, so one is
  always ready. A change between the loop and a turn's frames is cross-faded over
  ``FADE_FRAMES``, so the head does not jump;
* an :class:`~talkface.messages.Interrupt` throws away the turn's media not yet played,
  so the avatar stops within one audio chunk.

Media is not delivered with ``Timeline.wait_due``: a sentence's audio may be due seconds
ahead, and a pump asleep until then would not see a barge-in. The pump reads on, places
media by ``Timeline.due_ns`` (the same anchoring), and only waits for video frames, which
keeps at most ``VIDEO_AHEAD_NS`` of frames in memory and holds the pipeline back to the
pace of the wall clock (through the conversation's bounded outbox).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from talkface.api.realtime.idle_clip import IdleClip, IdleClipSource, blend
from talkface.api.sessions import FrameCounts
from talkface.audio import PLAYBACK_RATE_HZ, pcm16_at, to_int16
from talkface.clock import Clock
from talkface.errors import TalkfaceError
from talkface.messages import (
    NS_PER_S,
    EndOfTurn,
    Interrupt,
    Message,
    SpeechAudio,
    VideoFrame,
)
from talkface.output.encoded import EncodedVideo
from talkface.output.timeline import MediaSource, Timeline

logger = logging.getLogger(__name__)

VIDEO_AHEAD_NS = 400_000_000  # frames wait at most this long before they are due
MAX_QUEUED_FRAMES = 40  # beyond this a lagging sink loses its oldest frames
IDLE_AHEAD_FRAMES = 25  # idle frames kept rendered ahead (one second at 25 fps)
IDLE_CHUNK_FRAMES = 10
_IDLE_RETRY_S = 1.0
FADE_FRAMES = 4  # frames that cross-fade between the idle loop and a turn
_DRAIN_MARGIN_NS = 1_000_000_000

MessageSink = Callable[[Message], None]
"""Takes the non-media messages (transcripts, text, turn ends, interrupts, errors)."""
TurnSink = Callable[[int], None]
"""Told the turn id when a turn's first media leaves for the client."""


@dataclass(eq=False, slots=True)
class _Segment:
    """One sentence of speech on the audio timeline (placed when first read)."""

    turn_id: int
    due_ns: int
    samples: np.ndarray  # int16 at PLAYBACK_RATE_HZ
    start: int | None = None  # first sample index on the stream, once placed

    @property
    def end(self) -> int:
        assert self.start is not None
        return self.start + len(self.samples)


@dataclass(frozen=True, slots=True)
class _QueuedFrame:
    turn_id: int
    index: int
    due_ns: int
    image: np.ndarray


def _playback_pcm(speech: SpeechAudio) -> np.ndarray:
    """A sentence as int16 samples at :data:`PLAYBACK_RATE_HZ` (the stream's rate)."""
    return to_int16(pcm16_at(speech.pcm, speech.sample_rate_hz, PLAYBACK_RATE_HZ))


class _IdleFeed:
    """Idle frames rendered ahead, from a frame index on, while the avatar is not talking.

    Args:
        render: ``(first_frame_index, count) -> frames`` (the conversation's idle_frames).
    """

    def __init__(self, render: Callable[[int, int], Awaitable[list[np.ndarray]]]) -> None:
        self._render = render
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._next_index = 0  # index of the frame after the last one rendered
        self._generation = 0
        self._paused = False
        self._stopped = False
        self._wake = asyncio.Event()

    def take(self) -> np.ndarray | None:
        """The next idle frame, if one is ready."""
        frame = self._frames.popleft() if self._frames else None
        if len(self._frames) < IDLE_AHEAD_FRAMES:
            self._wake.set()
        return frame

    def pause(self) -> None:
        """The avatar is talking: its own frames are shown, no idle ones are needed."""
        self._paused = True

    def restart(self, first_frame_index: int) -> None:
        """Idle from ``first_frame_index`` on (the frame after the last one spoken)."""
        self._frames.clear()
        self._next_index = first_frame_index
        self._generation += 1
        self._paused = False
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    def stop(self) -> None:
        """The idle loop plays from now on: render nothing more."""
        self._stopped = True
        self._frames.clear()

    async def fill(self, count: int) -> None:
        """Render ``count`` frames now (raises what the animator raises: a bad avatar)."""
        first = self._next_index
        self._frames.extend(await self._render(first, count))
        self._next_index = first + count

    async def run(self) -> None:
        """Keep ``IDLE_AHEAD_FRAMES`` rendered, forever (cancel to stop)."""
        while True:
            self._wake.clear()
            if self._paused or self._stopped or len(self._frames) >= IDLE_AHEAD_FRAMES:
                await self._wake.wait()
                continue
            generation, first = self._generation, self._next_index
            try:
                frames = await self._render(first, IDLE_CHUNK_FRAMES)
            except TalkfaceError as exc:
                # The listening face can wait (the last frame is held); say why once a second.
                logger.warning("idle frames could not be rendered: %s", exc)
                await asyncio.sleep(_IDLE_RETRY_S)
                continue
            if generation == self._generation and not self._stopped:  # not restarted meanwhile
                self._frames.extend(frames)
                self._next_index = first + len(frames)


@dataclass(slots=True)
class _TurnMedia:
    """What the pump knows of a turn's media."""

    end_ns: int = 0  # wall time its media has played out


@dataclass(slots=True)
class _Deferred:
    due_ns: int
    seq: int
    message: EndOfTurn

    def __lt__(self, other: _Deferred) -> bool:
        return (self.due_ns, self.seq) < (other.due_ns, other.seq)


class AvatarMedia:
    """A conversation's output as a continuous audio and video stream.

    Args:
        conversation: the conversation whose messages this reads (its only reader, and
            its player, driving its :class:`Timeline`).
        fps: video frame rate.
        on_message: takes every non-media message; a turn's :class:`EndOfTurn` comes when
            its media has played (at once when it was interrupted).
        on_first_output: told when a turn's first media leaves through
            :meth:`video_frame` or :meth:`audio`.
        idle_clip: where the shared idle loop comes from (None: every idle frame is
            rendered for this session).
        frames: counts the frames shown and those late (default: counted here only).
    """

    def __init__(self, conversation: MediaSource, *, fps: int, on_message: MessageSink,
                 on_first_output: TurnSink, idle_clip: IdleClipSource | None = None,
                 frames: FrameCounts | None = None) -> None:
        self._conversation = conversation
        self._timeline: Timeline = conversation.timeline
        self.clock: Clock = self._timeline.clock
        self.fps = fps
        self._frame_ns = NS_PER_S // fps
        self._on_message = on_message
        self._on_first_output = on_first_output
        self._idle = _IdleFeed(conversation.idle_frames)
        self._video: collections.deque[_QueuedFrame] = collections.deque()
        self._segments: collections.deque[_Segment] = collections.deque()
        self._audio_end = 0  # sample index where the placed speech ends
        self._turns: dict[int, _TurnMedia] = {}  # turns whose media is being read
        self._cut_turns: set[int] = set()
        self._started_turn = 0  # highest turn id whose media has left
        self._shown_turn: int | None = None  # turn of the frame on screen (None: idle)
        self._last_image: np.ndarray | None = None
        self._deferred: list[_Deferred] = []
        self._seq = itertools.count()
        self._deferred_wake = asyncio.Event()
        self._played = asyncio.Event()  # set whenever queued media or an event goes out
        self._start_ns: int | None = None
        self.frames = frames or FrameCounts()
        self._clip_source = idle_clip
        self._clip: IdleClip | None = None
        self._clip_index: int | None = None  # loop frame on screen, as the loop has it
        self._showing_clip = False
        self._fade_from: np.ndarray | None = None
        self._fade_left = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def prepare(self) -> None:
        """Render the first idle frames, so a frame is ready the moment a client connects.

        Raises:
            BadInput: the avatar does not exist (and anything else the animator raises).
        """
        await self._idle.fill(IDLE_AHEAD_FRAMES)

    async def run(self) -> None:
        """Read the conversation until its output ends, then let the queued media play."""
        async with asyncio.TaskGroup() as group:
            idle = group.create_task(self._idle.run(), name="idle-frames")
            timer = group.create_task(self._deferred_loop(), name="turn-ends")
            clip = group.create_task(self._load_clip(), name="idle-clip")
            await self._pump()
            await self._drain()
            idle.cancel()
            timer.cancel()
            clip.cancel()

    async def _load_clip(self) -> None:
        """Switch to the shared idle loop once it exists (the first session builds it)."""
        source = self._clip_source
        if source is None:
            return
        try:
            clip = await source.load(self._conversation.idle_frames, self.fps)
        except TalkfaceError as exc:
            logger.warning("the idle loop could not be made (idle frames are rendered "
                           "per session): %s", exc)
            return
        self._clip = clip
        self._idle.stop()

    def start_clock(self) -> int:
        """The stream's time zero (set by the first caller): sample 0, frame tick 0."""
        if self._start_ns is None:
            self._start_ns = self.clock.now_ns()
        return self._start_ns

    @property
    def playing(self) -> bool:
        """Media is queued or a turn is being read."""
        return bool(self._video or self._segments or self._turns)

    # --- what transports call --------------------------------------------------------------

    def video_frame(self, at_ns: int) -> np.ndarray:
        """The image to show at wall time ``at_ns`` (the avatar speaking, or listening)."""
        chosen: _QueuedFrame | None = None
        half_frame_ns = self._frame_ns // 2
        self.frames.shown += 1
        while self._video and self._video[0].due_ns <= at_ns + half_frame_ns:
            if chosen is not None:
                self.frames.late += 1  # late: only the newest due frame is shown
            chosen = self._video.popleft()
        if chosen is not None:
            self._played.set()
            self._shown_turn = chosen.turn_id
            self._timeline.frame_shown(chosen.turn_id, chosen.index)
            self._started(chosen.turn_id)
            self._last_image = self._faded(chosen.image, from_clip=False)
            return self._last_image
        if self._shown_turn is not None and self._shown_turn in self._turns:
            # The turn is still being made but its next frame is late: hold this one.
            self.frames.late += 1
            assert self._last_image is not None
            return self._last_image
        if self._clip is not None:
            self._shown_turn = None
            self._last_image = self._clip_frame(at_ns)
            return self._last_image
        idle = self._idle.take()
        if idle is not None:
            self._shown_turn = None
            self._last_image = idle
        if self._last_image is None:
            raise RuntimeError("AvatarMedia.prepare() must run before frames are read")
        return self._last_image

    def idle_loop_frame(self, image: np.ndarray) -> tuple[IdleClip, int] | None:
        """The idle loop and the index of its frame that ``image`` is, when ``image`` is
        one of its frames as it was rendered (not a cross-fade): its encodings apply."""
        clip, index = self._clip, self._clip_index
        if clip is None or index is None or image is not clip.frames[index]:
            return None
        return clip, index

    def encoded_loop_frame(self, image: np.ndarray) -> tuple[EncodedVideo, int] | None:
        """The idle loop's video encoded once and the index of ``image`` in it, when
        ``image`` is a loop frame as rendered and the loop has such an encoding."""
        shown = self.idle_loop_frame(image)
        if shown is None or shown[0].video is None:
            return None
        return shown[0].video, shown[1]

    def cached_jpeg(self, image: np.ndarray) -> bytes | None:
        """``image`` as JPEG, when it is a frame of the idle loop as encoded once (else
        None: encode it)."""
        shown = self.idle_loop_frame(image)
        if shown is None or not shown[0].jpegs:
            return None
        clip, index = shown
        return clip.jpegs[index]

    def _clip_frame(self, at_ns: int) -> np.ndarray:
        clip = self._clip
        assert clip is not None and self._clip_source is not None
        tick = round((at_ns - self.start_clock()) * self.fps / NS_PER_S)
        index = (tick + self._clip_source.phase_frames) % len(clip)
        self._clip_index = index
        image = self._faded(clip.frames[index], from_clip=True)
        if image is not clip.frames[index]:
            self._clip_index = None  # a cross-faded frame has no JPEG of its own
        return image

    def _faded(self, image: np.ndarray, *, from_clip: bool) -> np.ndarray:
        """``image``, cross-faded from the last frame shown when the source changed
        between the idle loop and the animator (only while the loop is in use)."""
        if self._clip is None:
            return image
        if from_clip != self._showing_clip:
            self._showing_clip = from_clip
            self._fade_from, self._fade_left = self._last_image, FADE_FRAMES
        if not from_clip:
            self._clip_index = None
        if self._fade_left <= 0 or self._fade_from is None:
            return image
        weight = self._fade_left / (FADE_FRAMES + 1)  # of the frame faded from
        self._fade_left -= 1
        return blend(image, self._fade_from, weight)

    def audio(self, first_sample: int, num_samples: int) -> bytes:
        """``num_samples`` of s16le mono PCM at ``PLAYBACK_RATE_HZ`` from stream sample
        ``first_sample`` on (speech where it is due, silence elsewhere)."""
        out = np.zeros(num_samples, np.int16)
        end = first_sample + num_samples
        start_ns = self.start_clock()
        for segment in list(self._segments):
            if segment.start is None:
                ideal = (segment.due_ns - start_ns) * PLAYBACK_RATE_HZ // NS_PER_S
                # Late speech starts now, and sentences never overlap: audio is never dropped.
                segment.start = max(ideal, first_sample, self._audio_end)
                self._audio_end = segment.end
            if segment.start >= end:
                break
            lo, hi = max(segment.start, first_sample), min(segment.end, end)
            if hi > lo:
                out[lo - first_sample : hi - first_sample] = segment.samples[
                    lo - segment.start : hi - segment.start]
                self._started(segment.turn_id)
            if segment.end <= end:
                self._segments.popleft()
                self._played.set()
        return out.tobytes()

    def audio_pending_before(self, sample: int) -> bool:
        """Whether speech waits to be played before stream sample ``sample``."""
        start_ns = self.start_clock()
        for segment in self._segments:
            begin = segment.start if segment.start is not None else (
                (segment.due_ns - start_ns) * PLAYBACK_RATE_HZ // NS_PER_S)
            if begin < sample:
                return True
        return False

    # --- the pump --------------------------------------------------------------------------

    async def _pump(self) -> None:
        async for message in self._conversation.messages():
            if isinstance(message, SpeechAudio):
                await self._place_speech(message)
            elif isinstance(message, VideoFrame):
                await self._place_frame(message)
            elif isinstance(message, Interrupt):
                self._cut(message.turn_id)
                self._on_message(message)
            elif isinstance(message, EndOfTurn):
                self._end_turn(message)
            else:
                self._on_message(message)

    def _turn(self, turn_id: int) -> _TurnMedia:
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _TurnMedia()
            self._idle.pause()
        return turn

    async def _place_speech(self, speech: SpeechAudio) -> None:
        if speech.turn_id in self._cut_turns:
            return
        due = self._timeline.due_ns(speech)
        assert due is not None
        turn = self._turn(speech.turn_id)
        # Resampling a sentence is milliseconds of CPU: not on the loop every session shares.
        pcm = await asyncio.to_thread(_playback_pcm, speech)
        self._segments.append(_Segment(speech.turn_id, due, pcm))
        turn.end_ns = max(turn.end_ns, due + speech.duration_ns)

    async def _place_frame(self, frame: VideoFrame) -> None:
        if frame.turn_id in self._cut_turns:
            return
        due = self._timeline.due_ns(frame)
        assert due is not None
        turn = self._turn(frame.turn_id)
        turn.end_ns = max(turn.end_ns, due + self._frame_ns)
        self._video.append(_QueuedFrame(frame.turn_id, frame.index, due, frame.image))
        while len(self._video) > MAX_QUEUED_FRAMES:
            self._video.popleft()  # nobody is reading: a lagging sink loses its oldest frame
            self.frames.late += 1
        # Hold the pipeline back to the wall clock; never long, so interrupts are seen.
        await self.clock.sleep(due - VIDEO_AHEAD_NS - self.clock.now_ns())

    def _end_turn(self, end: EndOfTurn) -> None:
        if end.turn_id in self._cut_turns and not end.interrupted:
            return  # it was cut before it could play out: its interrupted end follows
        turn = self._turns.pop(end.turn_id, None)
        idle_from = self._timeline.idle_from(end.turn_id)
        if turn is not None and idle_from is not None:
            self._idle.restart(idle_from)
        elif not self._turns:
            self._idle.resume()
        now = self.clock.now_ns()
        if turn is None or end.interrupted or turn.end_ns <= now:
            self._on_message(end)
            return
        # The client hears the end of the turn when its media has played, not now.
        heapq.heappush(self._deferred, _Deferred(turn.end_ns, next(self._seq), end))
        self._deferred_wake.set()

    def _cut(self, turn_id: int) -> None:
        """Barge-in: the turn's media not yet played goes, now."""
        self._timeline.cut(turn_id)
        self._cut_turns.add(turn_id)
        if len(self._cut_turns) > 64:
            self._cut_turns = {t for t in self._cut_turns if t > turn_id - 32}
        kept = [s for s in self._segments if s.turn_id != turn_id]
        if len(kept) != len(self._segments):
            self._segments = collections.deque(kept)
            self._audio_end = max((s.end for s in kept if s.start is not None), default=0)
        self._video = collections.deque(f for f in self._video if f.turn_id != turn_id)
        self._deferred = [d for d in self._deferred if d.message.turn_id != turn_id]
        heapq.heapify(self._deferred)
        turn = self._turns.pop(turn_id, None)
        idle_from = self._timeline.idle_from(turn_id, cut=True)
        if idle_from is not None:
            self._idle.restart(idle_from)
        elif turn is not None and not self._turns:
            self._idle.resume()

    def _started(self, turn_id: int) -> None:
        if turn_id > self._started_turn:
            self._started_turn = turn_id
            self._on_first_output(turn_id)

    async def _deferred_loop(self) -> None:
        while True:
            self._deferred_wake.clear()
            now = self.clock.now_ns()
            while self._deferred and self._deferred[0].due_ns <= now:
                self._on_message(heapq.heappop(self._deferred).message)
                self._played.set()
            if self._deferred:
                wait_s = (self._deferred[0].due_ns - now) / NS_PER_S
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._deferred_wake.wait()
            else:
                await self._deferred_wake.wait()

    async def _drain(self) -> None:
        """The conversation has ended: wait until what is queued has played (bounded)."""
        ends = [d.due_ns for d in self._deferred] + [f.due_ns for f in self._video] + [
            s.due_ns + len(s.samples) * NS_PER_S // PLAYBACK_RATE_HZ for s in self._segments]
        deadline = max(ends, default=0) + _DRAIN_MARGIN_NS
        while self._deferred or self._video or self._segments:
            left_ns = deadline - self.clock.now_ns()
            if left_ns <= 0:
                break
            self._played.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left_ns / NS_PER_S):
                    await self._played.wait()
        for deferred in sorted(self._deferred):
            self._on_message(deferred.message)
        self._deferred.clear()
