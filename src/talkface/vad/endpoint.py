"""From microphone chunks to utterances: speech start, pause, end.

An :class:`Endpointer` eats :class:`~talkface.messages.AudioChunk`\\ s of any size and
sample rate, cuts them into the VAD's 32 ms windows at 16 kHz and emits:

* :class:`SpeechStart` on the first speech window, with that window's input-timeline
  time: at most one window (32 ms of audio) after the onset, so barge-in can cancel the
  reply at once.
* :class:`SpeechPause` when the speech goes quiet and its trailing padding has arrived:
  the utterance *as it will be* if the user does not go on. A streaming transcriber
  starts the final ASR pass here, during the hangover.
* :class:`SpeechEnd` after ``min_silence_ms`` of silence (or at ``max_speech_s``), with
  the utterance audio (16 kHz float32, ``speech_pad_ms`` of padding either side). When
  the user did not resume, it is the audio of the last :class:`SpeechPause`.
* :class:`SpeechDiscarded` instead of an end when there was less than
  ``min_speech_ms`` of speech (a cough, a click).

While the user speaks, :meth:`Endpointer.utterance_audio` returns the utterance so far
for partial transcripts.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkface.audio import pcm16_to_float32
from talkface.engines import Engine
from talkface.messages import NS_PER_S, AudioChunk
from talkface.vad.base import (
    VAD_SAMPLE_RATE_HZ,
    VADBackend,
    VADRequest,
    VADSettings,
    VADStream,
)

_ONSET_LAG_MS = 100.0
"""Silero reacts to unvoiced onsets (an "s", a "th") up to ~130 ms late (measured on
piper and espeak-ng speech), so the audio kept before the first speech window is
``speech_pad_ms`` plus this."""
_ONSET_BACKTRACK_WINDOWS = 3
"""The reported onset may lie up to this many windows before the one that triggered: the
model decides late on soft onsets ("h", "th"), but the audio shows where speech began."""
_ONSET_BACKTRACK_PROB = 0.1
"""Windows just before the trigger with at least this probability were speech rising."""
_ONSET_FRAME_SAMPLES = 128  # 8 ms: the resolution of the energy onset
_ONSET_MIN_RMS = 0.005  # -46 dBFS: quieter than this is not a speech onset
_ONSET_OVER_FLOOR = 4.0  # the onset is where the level rises 12 dB over the noise floor
_DISCONTINUITY_NS = 100_000_000
"""A chunk whose pts is this far from where the previous one ended shifts the timeline."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Utterance:
    """One stretch of speech.

    Attributes:
        audio: float32 mono at 16 kHz, padded with ``speech_pad_ms`` either side.
        start_pts_ns: input-timeline time of ``audio[0]``.
        end_pts_ns: input-timeline time just after ``audio[-1]``.
        speech_start_pts_ns: time of the first speech window (the onset).
    """

    audio: np.ndarray = field(repr=False)
    start_pts_ns: int
    end_pts_ns: int
    speech_start_pts_ns: int

    @property
    def duration_s(self) -> float:
        """Length of ``audio``, in seconds."""
        return len(self.audio) / VAD_SAMPLE_RATE_HZ


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStart:
    """The user started speaking at ``pts_ns`` (start of the first speech window)."""

    pts_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechPause:
    """The speech went quiet; ``utterance`` is what :class:`SpeechEnd` will carry if the
    silence lasts the hangover."""

    utterance: Utterance


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechEnd:
    """The utterance is over.

    Attributes:
        utterance: its audio and times.
        forced: it was cut at ``max_speech_s`` while the user was still speaking.
    """

    utterance: Utterance
    forced: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechDiscarded:
    """Speech started at ``start_pts_ns`` but was too short to be an utterance."""

    start_pts_ns: int
    end_pts_ns: int


VADEvent = SpeechStart | SpeechPause | SpeechEnd | SpeechDiscarded


class _Buffer:
    """16 kHz samples addressed by their absolute index since the stream began."""

    def __init__(self) -> None:
        self._data = np.zeros(VAD_SAMPLE_RATE_HZ, dtype=np.float32)
        self.start = 0  # absolute index of _data[0]
        self._length = 0

    @property
    def end(self) -> int:
        return self.start + self._length

    def append(self, samples: np.ndarray) -> None:
        needed = self._length + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), dtype=np.float32)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        self._data[self._length : needed] = samples
        self._length = needed

    def view(self, begin: int, end: int) -> np.ndarray:
        begin = max(begin, self.start)
        return self._data[begin - self.start : end - self.start]

    def drop_before(self, index: int) -> None:
        drop = min(index, self.end) - self.start
        if drop <= 0:
            return
        remaining = self._length - drop
        self._data[:remaining] = self._data[drop : self._length]
        self._length = remaining
        self.start += drop


class Endpointer:
    """Per-session speech endpointing over a shared VAD model.

    Not thread-safe and not re-entrant: feed one session's audio from one task.

    Times come from the first chunk's ``pts_ns`` plus the samples counted since, so they
    are sample-accurate for continuous input. When a chunk's ``pts_ns`` is more than
    100 ms away from where the previous chunk ended (lost packets, a paused source), the
    timeline follows the chunk from then on.

    Args:
        backend: the loaded VAD model (shared).
        settings: thresholds and timings; defaults to the backend's settings.
        engine: the VAD engine sessions share (live sessions: queued and counted with
            the other stages); None scores in the backend's worker thread directly.
    """

    def __init__(self, backend: VADBackend, settings: VADSettings | None = None, *,
                 engine: Engine[VADRequest, np.ndarray] | None = None) -> None:
        self._backend = backend
        self._engine = engine
        self.settings = settings or backend.settings
        self._stream: VADStream = backend.new_stream()
        self._window = self._stream.window_samples
        self._pad = _samples(self.settings.speech_pad_ms / 1000)
        self._preroll = _samples((self.settings.speech_pad_ms + _ONSET_LAG_MS) / 1000)
        self._min_silence = _samples(self.settings.min_silence_ms / 1000)
        self._min_speech = _samples(self.settings.min_speech_ms / 1000)
        self._max_speech = _samples(self.settings.max_speech_s)
        self._threshold = self.settings.threshold
        self._silence_threshold = self.settings.silence_threshold
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new input stream starts with the next chunk."""
        self._stream.reset()
        self._buffer = _Buffer()
        self._next_window = 0
        self._rate_hz: int | None = None
        self._resampler: Any = None
        self._pts_base_ns: int | None = None
        self._expected_pts_ns = 0
        self._in_speech = False
        self._utterance_start = 0
        self._onset = 0
        self._last_speech_end = 0
        self._silence_start: int | None = None
        self._pause_sent = False
        self._recent: collections.deque[float] = collections.deque(maxlen=_ONSET_BACKTRACK_WINDOWS)

    # --- what the session reads ---------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and its end."""
        return self._in_speech

    def utterance_audio(self) -> Utterance | None:
        """The utterance heard so far (a copy), or None when nobody is speaking."""
        if not self._in_speech:
            return None
        end = self._buffer.end
        return Utterance(
            audio=self._buffer.view(self._utterance_start, end).copy(),
            start_pts_ns=self._pts(self._utterance_start),
            end_pts_ns=self._pts(end),
            speech_start_pts_ns=self._pts(self._onset),
        )

    # --- feeding ------------------------------------------------------------------------

    def push(self, chunk: AudioChunk) -> list[VADEvent]:
        """Feed one chunk; the events it completes, in order.

        Runs the model on the calling thread: ~0.2 ms per 32 ms of audio. For chunks
        longer than about a second (a file), prefer :meth:`apush`.
        """
        windows = self._ingest(chunk)
        if windows is None:
            return []
        return self._advance(self._stream.speech_probabilities(windows))

    async def apush(self, chunk: AudioChunk) -> list[VADEvent]:
        """:meth:`push` with the model run off the event loop (the engine, or the VAD's
        worker thread)."""
        windows = self._ingest(chunk)
        if windows is None:
            return []
        return self._advance(await self._score(windows))

    def flush(self) -> list[VADEvent]:
        """End of input: close a running utterance (its end is the last speech + padding)."""
        windows = self._flush_windows()
        events = (
            [] if windows is None else self._advance(self._stream.speech_probabilities(windows))
        )
        return events + self._close_utterance()

    async def aflush(self) -> list[VADEvent]:
        """:meth:`flush` with the model run off the event loop."""
        windows = self._flush_windows()
        events = [] if windows is None else self._advance(await self._score(windows))
        return events + self._close_utterance()

    async def _score(self, windows: np.ndarray) -> np.ndarray:
        if self._engine is not None:
            return await self._engine.submit(VADRequest(self._stream, windows))
        return await self._backend.thread.run(self._stream.speech_probabilities, windows)

    def _flush_windows(self) -> np.ndarray | None:
        self._drain_resampler()
        self._rate_hz = None
        return self._complete_windows()

    def _close_utterance(self) -> list[VADEvent]:
        events: list[VADEvent] = []
        if self._in_speech:
            end = min(self._buffer.end, self._last_speech_end + self._pad)
            events += self._finish(end, forced=False)
        return events

    def _ingest(self, chunk: AudioChunk) -> np.ndarray | None:
        self._anchor(chunk)
        if chunk.sample_rate_hz != self._rate_hz:
            self._switch_rate(chunk.sample_rate_hz)
        samples = pcm16_to_float32(chunk.pcm)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        self._buffer.append(samples)
        return self._complete_windows()

    def _anchor(self, chunk: AudioChunk) -> None:
        if self._pts_base_ns is None:
            self._pts_base_ns = chunk.pts_ns
        elif abs(chunk.pts_ns - self._expected_pts_ns) > _DISCONTINUITY_NS:
            # A gap or a jump in the input: the samples from here on get the chunk's times.
            self._pts_base_ns += chunk.pts_ns - self._expected_pts_ns
        self._expected_pts_ns = chunk.pts_ns + chunk.duration_ns

    def _switch_rate(self, rate_hz: int) -> None:
        self._drain_resampler()
        self._rate_hz = rate_hz
        if rate_hz != VAD_SAMPLE_RATE_HZ:
            import soxr  # the streaming form of talkface.audio.resample (libsoxr)

            self._resampler = soxr.ResampleStream(
                rate_hz, VAD_SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ"
            )

    def _drain_resampler(self) -> None:
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._buffer.append(tail)
            self._resampler = None

    def _complete_windows(self) -> np.ndarray | None:
        count = (self._buffer.end - self._next_window) // self._window
        if count <= 0:
            return None
        end = self._next_window + count * self._window
        return self._buffer.view(self._next_window, end).reshape(count, self._window).copy()

    # --- the state machine --------------------------------------------------------------

    def _advance(self, probabilities: np.ndarray) -> list[VADEvent]:
        events: list[VADEvent] = []
        for probability in probabilities.tolist():
            start = self._next_window
            end = start + self._window
            self._next_window = end
            if not self._in_speech:
                if probability >= self._threshold:
                    self._begin(start)
                    events.append(SpeechStart(pts_ns=self._pts(self._onset)))
                else:
                    self._recent.append(probability)
                continue
            if probability >= self._threshold:
                self._silence_start = None
                self._pause_sent = False
                self._last_speech_end = end
            elif probability < self._silence_threshold:
                if self._silence_start is None:
                    self._silence_start = start
            elif self._silence_start is None:
                self._last_speech_end = end  # undecided: speech goes on
            events += self._check_end(end)
        if not self._in_speech:
            self._buffer.drop_before(self._next_window - self._preroll)
        return events

    def _begin(self, window_start: int) -> None:
        self._in_speech = True
        self._onset = self._onset_before(window_start)
        self._recent.clear()
        self._utterance_start = max(self._buffer.start, window_start - self._preroll)
        self._last_speech_end = window_start + self._window
        self._silence_start = None
        self._pause_sent = False

    def _onset_before(self, trigger: int) -> int:
        """Where the speech that triggered at window ``trigger`` began.

        The earlier of: the first of the windows just before it whose probability was
        already rising, and the first 8 ms frame of the run of frames, ending in the
        trigger window, that are 12 dB above the noise floor measured before them.
        """
        rising = 0
        for probability in reversed(self._recent):
            if probability < _ONSET_BACKTRACK_PROB:
                break
            rising += 1
        by_probability = trigger - rising * self._window
        frame = _ONSET_FRAME_SAMPLES
        low = max(self._buffer.start, trigger - _ONSET_BACKTRACK_WINDOWS * self._window)
        region = self._buffer.view(low, trigger + self._window)
        frames = len(region) // frame
        if frames == 0:
            return max(self._buffer.start, by_probability)
        levels = np.sqrt(np.mean(region[: frames * frame].reshape(frames, frame) ** 2, axis=1))
        before = self._buffer.view(self._buffer.start, low)
        floor = float(np.sqrt(np.mean(before**2))) if before.size else 0.0
        threshold = max(_ONSET_OVER_FLOOR * floor, _ONSET_MIN_RMS)
        first = frames - 1
        while first > 0 and levels[first - 1] >= threshold:
            first -= 1
        by_energy = low + first * frame if levels[frames - 1] >= threshold else trigger
        return max(self._buffer.start, min(by_probability, by_energy))

    def _check_end(self, now: int) -> list[VADEvent]:
        if self._silence_start is not None:
            speech_end = self._silence_start + self._pad
            if not self._pause_sent and now >= speech_end and self._has_enough_speech():
                self._pause_sent = True
                return [SpeechPause(utterance=self._utterance(speech_end))]
            if now - self._silence_start >= self._min_silence:
                return self._finish(speech_end, forced=False)
        elif now - self._utterance_start >= self._max_speech:
            return self._finish(now, forced=True)
        return []

    def _has_enough_speech(self) -> bool:
        return self._last_speech_end - self._onset >= self._min_speech

    def _finish(self, end: int, *, forced: bool) -> list[VADEvent]:
        self._in_speech = False
        self._silence_start = None
        if not forced and not self._has_enough_speech():
            return [SpeechDiscarded(start_pts_ns=self._pts(self._onset), end_pts_ns=self._pts(end))]
        return [SpeechEnd(utterance=self._utterance(end), forced=forced)]

    def _utterance(self, end: int) -> Utterance:
        return Utterance(
            audio=self._buffer.view(self._utterance_start, end).copy(),
            start_pts_ns=self._pts(self._utterance_start),
            end_pts_ns=self._pts(end),
            speech_start_pts_ns=self._pts(self._onset),
        )

    def _pts(self, index: int) -> int:
        return (self._pts_base_ns or 0) + index * NS_PER_S // VAD_SAMPLE_RATE_HZ


def _samples(seconds: float) -> int:
    return round(seconds * VAD_SAMPLE_RATE_HZ)
