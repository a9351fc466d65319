"""Transcribing one utterance while it is spoken, and finishing it fast.

A :class:`StreamingTranscriber` lives for one utterance of one session. The session
hands it what the :class:`~talkface.vad.endpoint.Endpointer` says:

* :meth:`~StreamingTranscriber.update` with the utterance so far, at any rate (every
  mic chunk is fine): at most every ``partial_interval_ms`` it submits a partial pass,
  never more than one at a time, and :meth:`~StreamingTranscriber.partials` yields the
  results as ``Transcript(is_final=False)``;
* :meth:`~StreamingTranscriber.pause` on a :class:`~talkface.vad.endpoint.SpeechPause`:
  it starts the **final pass now, speculatively**, on the exact audio the end event will
  carry if the user does not go on;
* :meth:`~StreamingTranscriber.finish` on :class:`~talkface.vad.endpoint.SpeechEnd`:
  when the audio is the paused one, the answer is the speculative pass (often already
  done); otherwise it cancels what is in flight and runs one final pass.

So the final pass overlaps the end-of-speech hangover (``min_silence_ms`` -
``speech_pad_ms`` = 300 ms with the defaults), and the time from the end event to the
final transcript is about ``max(0, pass - 300 ms)``. A pass over a whole utterance is
cheap because the Whisper backend decodes a window cut to the utterance (see
:mod:`talkface.asr.faster_whisper`). Measured with ``bench/asr_bench.py`` on the 2-core
development box, 1 thread, piper speech with the VAD's padding, median of 3 (seconds;
"30 s" is Whisper's usual window, "cut" is talkface's, "left" is what remains after the
end event when the pass started at the pause):

=========  ====================  ====================
utterance  base: 30 s/cut/left   tiny.en: 30 s/cut/left
=========  ====================  ====================
1.2 s      1.33 / 0.39 / 0.09    0.69 / 0.22 / 0.00
2.7 s      1.35 / 0.39 / 0.09    0.70 / 0.20 / 0.00
6.0 s      1.58 / 0.49 / 0.19    0.68 / 0.30 / 0.00
9.8 s      1.81 / 0.78 / 0.48    0.72 / 0.34 / 0.04
=========  ====================  ====================

A partial pass in flight when the user pauses is cancelled, but a pass the model has
already started runs to its end first; with a busy CPU, ``partial_interval_ms=0`` gives
the fastest finals.

Everything here is a coroutine or a cheap synchronous call; model work happens behind
``submit`` (an :meth:`~talkface.engines.Engine.submit` shared by all sessions).
:meth:`~StreamingTranscriber.aclose` (barge-in, session close) cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self

from talkface.asr.base import ASRRequest
from talkface.clock import Clock, MonotonicClock
from talkface.errors import TalkfaceError
from talkface.messages import Transcript
from talkface.vad.endpoint import Utterance

logger = logging.getLogger(__name__)

SubmitFn = Callable[[ASRRequest], Awaitable[Transcript]]

MIN_PARTIAL_AUDIO_S = 0.8
"""No partial pass before this much audio: Whisper guesses wildly on a syllable."""
LANGUAGE_LOCK_AUDIO_S = 1.5
"""A partial over at least this much audio fixes the language for the rest of the turn."""
_PARTIAL_QUEUE_SIZE = 4
_NS_PER_MS = 1_000_000

_Key = tuple[int, int, int]


def _key(utterance: Utterance) -> _Key:
    return (utterance.start_pts_ns, utterance.end_pts_ns, len(utterance.audio))


@dataclasses.dataclass(slots=True)
class _InFlight:
    task: asyncio.Task[Transcript]
    request: ASRRequest
    speculative_key: _Key | None  # set for a speculative final pass


class StreamingTranscriber:
    """Partial transcripts while one utterance is spoken, then its final transcript.

    Use it as an async context manager (or call :meth:`aclose`), so nothing it started
    outlives it::

        async with StreamingTranscriber(asr_engine.submit, partial_interval_ms=1000) as st:
            ...  # st.update(...) / st.pause(...) from the VAD loop
            final = await st.finish(end_event.utterance)

    Args:
        submit: runs one request (normally the shared ASR engine's ``submit``).
        partial_interval_ms: least time between the starts of two partial passes;
            0 disables partials (the speculative final pass still runs).
        language: the language spoken, or None to detect it (the first partial over
            at least 1.5 s of audio then fixes it for the rest of the utterance).
        turn_id: copied to every request and transcript.
        clock: where time comes from (tests pass a manual clock).
    """

    def __init__(
        self,
        submit: SubmitFn,
        *,
        partial_interval_ms: float = 1000.0,
        language: str | None = None,
        turn_id: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self._submit = submit
        self._interval_ns = int(partial_interval_ms * _NS_PER_MS)
        self.language = language
        self._turn_id = turn_id
        self._clock = clock or MonotonicClock()
        self._latest: Utterance | None = None
        self._submitted_samples = 0
        self._last_partial_ns: int | None = None
        self._inflight: _InFlight | None = None
        self._pending_pause: Utterance | None = None
        self._speculative: dict[_Key, Transcript] = {}
        self._partials: asyncio.Queue[Transcript | None] = asyncio.Queue(_PARTIAL_QUEUE_SIZE)
        self._finishing = False
        self._closed = False
        self.partial_count = 0
        """Partial passes that produced a transcript (for metrics and tests)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- what the VAD loop calls ----------------------------------------------------------

    def update(self, utterance: Utterance) -> None:
        """The utterance heard so far; starts a partial pass when one is due."""
        if self._finishing or self._closed:
            return
        self._latest = utterance
        self._maybe_start()

    def pause(self, utterance: Utterance) -> None:
        """The speech went quiet: start the final pass on ``utterance`` speculatively."""
        if self._finishing or self._closed:
            return
        self._latest = utterance
        self._pending_pause = utterance
        if self._inflight is not None and self._inflight.speculative_key != _key(utterance):
            # The newest pause matters more than a partial; drop it if it has not run yet.
            self._inflight.task.cancel()
        self._maybe_start()

    async def finish(self, utterance: Utterance) -> Transcript:
        """The utterance ended; its final transcript (empty text when no speech was heard).

        Raises:
            BackendError, Overloaded: the final pass failed; nothing more will come.
        """
        if self._closed:
            raise RuntimeError("finish() on a closed StreamingTranscriber")
        self._finishing = True
        self._pending_pause = None
        key = _key(utterance)
        try:
            inflight = self._inflight
            if key not in self._speculative and inflight is not None:
                if inflight.speculative_key == key:
                    await asyncio.wait([inflight.task])
                else:
                    inflight.task.cancel()
                    await asyncio.wait([inflight.task])
            transcript = self._speculative.get(key)
            if transcript is None:
                transcript = await self._submit(self._request(utterance, is_final=True))
            return dataclasses.replace(transcript, is_final=True)
        finally:
            self._end_partials()

    async def final_for(self, utterance: Utterance) -> Transcript:
        """The final transcript of ``utterance`` as it was when the speech paused.

        Unlike :meth:`finish`, this does not end the utterance: the user may go on, and a
        later pause asks again for the longer audio. It reuses the speculative pass that
        :meth:`pause` started (waiting for it if it is still running), so a reply can be
        prepared during the hangover without a second model pass.

        Raises:
            BackendError, Overloaded: the pass failed.
        """
        key = _key(utterance)
        waited: set[int] = set()
        while key not in self._speculative:
            inflight = self._inflight
            pending = self._pending_pause
            busy = inflight is not None and id(inflight.task) not in waited
            mine = busy and (
                inflight.speculative_key == key
                or (pending is not None and _key(pending) == key)
            )
            if not mine:
                # Nothing of ours is running or queued behind a partial: run it now.
                transcript = await self._submit(self._request(utterance, is_final=True))
                self._speculative[key] = transcript
                break
            assert inflight is not None
            waited.add(id(inflight.task))
            # Done callbacks run in order: _on_done has stored a result before we resume.
            await asyncio.wait([inflight.task])
        return dataclasses.replace(self._speculative[key], is_final=True)

    async def partials(self) -> AsyncIterator[Transcript]:
        """The partial transcripts, in order, until :meth:`finish` or :meth:`aclose`."""
        while True:
            transcript = await self._partials.get()
            if transcript is None:
                return
            yield transcript

    async def aclose(self) -> None:
        """Cancel what is in flight and end :meth:`partials` (barge-in, session close)."""
        if self._closed:
            return
        self._closed = True
        inflight = self._inflight
        if inflight is not None:
            inflight.task.cancel()
            # wait() does not raise the task's CancelledError, so a cancel of *our*
            # caller still propagates.
            await asyncio.wait([inflight.task])
        self._end_partials()

    # --- scheduling -------------------------------------------------------------------------

    def _request(self, utterance: Utterance, *, is_final: bool) -> ASRRequest:
        return ASRRequest(
            audio=utterance.audio,
            language=self.language,
            is_final=is_final,
            turn_id=self._turn_id,
            end_pts_ns=utterance.end_pts_ns,
        )

    def _maybe_start(self) -> None:
        if self._inflight is not None or self._finishing or self._closed:
            return
        pause = self._pending_pause
        if pause is not None:
            self._pending_pause = None
            if _key(pause) not in self._speculative:
                self._start(self._request(pause, is_final=True), speculative_key=_key(pause))
            return
        latest = self._latest
        if self._interval_ns <= 0 or latest is None:
            return
        if len(latest.audio) <= self._submitted_samples:
            return
        if latest.duration_s < MIN_PARTIAL_AUDIO_S:
            return
        now_ns = self._clock.now_ns()
        if self._last_partial_ns is not None and now_ns - self._last_partial_ns < self._interval_ns:
            return
        self._last_partial_ns = now_ns
        self._start(self._request(latest, is_final=False), speculative_key=None)

    def _start(self, request: ASRRequest, *, speculative_key: _Key | None) -> None:
        self._submitted_samples = len(request.audio)
        task = asyncio.get_running_loop().create_task(self._run(request))
        self._inflight = _InFlight(task=task, request=request, speculative_key=speculative_key)
        task.add_done_callback(self._on_done)

    async def _run(self, request: ASRRequest) -> Transcript:
        return await self._submit(request)

    def _on_done(self, task: asyncio.Task[Transcript]) -> None:
        inflight = self._inflight
        if inflight is None or inflight.task is not task:
            return
        self._inflight = None
        if task.cancelled():
            self._maybe_start()
            return
        error = task.exception()
        if error is not None:
            # A failed partial or speculative pass is not fatal: finish() runs its own.
            level = logging.INFO if isinstance(error, TalkfaceError) else logging.WARNING
            logger.log(level, "ASR pass failed: %s: %s", type(error).__name__, error)
            self._maybe_start()
            return
        transcript = task.result()
        if inflight.speculative_key is not None:
            self._speculative[inflight.speculative_key] = transcript
        self._lock_language(transcript, inflight.request)
        if not self._finishing and not self._closed and transcript.text:
            self.partial_count += 1
            self._put_partial(dataclasses.replace(transcript, is_final=False))
        self._maybe_start()

    def _lock_language(self, transcript: Transcript, request: ASRRequest) -> None:
        if (
            self.language is None
            and transcript.language
            and transcript.text
            and request.duration_s >= LANGUAGE_LOCK_AUDIO_S
        ):
            self.language = transcript.language

    def _put_partial(self, transcript: Transcript) -> None:
        if self._partials.full():
            self._partials.get_nowait()  # nobody is reading fast enough: keep the newest
        self._partials.put_nowait(transcript)

    def _end_partials(self) -> None:
        if self._partials.full():
            self._partials.get_nowait()
        self._partials.put_nowait(None)
