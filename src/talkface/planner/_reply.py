"""One reply in flight: its sentences, chunks and playback, driven by stage callbacks.

The LLM hands each sentence to :meth:`Turn.on_text`; from there each sentence goes to the
TTS, each chunk of its audio to the animator and then to the session's encoder, and
:meth:`Turn.on_ready` plays the chunks at the pipeline's fps, stalling when one is late.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from talkface.planner.des import PerSessionStage
from talkface.planner.workload import Workload

if TYPE_CHECKING:
    from talkface.planner.simulate import _PipelineSim


def plan_reply(workload: Workload, rng: random.Random) -> tuple[list[int], list[float], list[int]]:
    """Draw one reply: sentence boundaries (token counts), audio per sentence, cache hits.

    Hits per sentence: 0 none, 1 TTS cache (no TTS call), 2 animation cache (no TTS, no
    animator call).
    """
    wl = workload
    total = max(1, round(wl.reply_tokens.sample(rng)))
    boundaries = [min(total, max(1, round(wl.first_sentence_tokens.sample(rng))))]
    while boundaries[-1] < total:
        step = max(1, round(wl.sentence_tokens.sample(rng)))
        boundaries.append(min(total, boundaries[-1] + step))
    previous = 0
    audio: list[float] = []
    hits: list[int] = []
    anim, tts = wl.animation_cache_hit_rate, wl.tts_cache_hit_rate
    for boundary in boundaries:
        audio.append((boundary - previous) * wl.speech_s_per_token)
        previous = boundary
        u = rng.random()
        hits.append(2 if u < anim else 1 if u < anim + tts else 0)
    return boundaries, audio, hits


class Turn:
    """Bookkeeping of one reply, driven by callbacks from the stages."""

    __slots__ = (
        "anim_inflight",
        "anim_next",
        "animated",
        "audio_done",
        "chunk_sentence",
        "chunks",
        "enc_free_s",
        "enc_next",
        "end_s",
        "finished",
        "fps",
        "frames",
        "hits",
        "measured",
        "sentence_audio_s",
        "sim",
        "stall_s",
        "start_s",
        "t_anim0",
        "t_asr",
        "t_audio0",
        "t_ref",
        "t_text0",
        "t_vad",
        "text_ready",
        "ttff_s",
        "tts_inflight",
        "tts_next",
    )

    def __init__(
        self,
        sim: _PipelineSim,
        sentence_audio_s: list[float],
        hits: list[int],
        fps: float | None = None,
    ) -> None:
        self.sim = sim
        self.fps = sim.fps if fps is None else fps  # the session's (the ladder may lower it)
        self._plan(sentence_audio_s, hits)
        self.tts_next = self.tts_inflight = 0
        self.anim_next = self.anim_inflight = 0
        self.enc_next = 0
        self.enc_free_s = 0.0
        self.start_s = self.end_s = -1.0
        self.stall_s = 0.0
        self.t_ref = self.t_vad = self.t_asr = 0.0
        self.t_text0 = self.t_audio0 = self.t_anim0 = -1.0
        self.ttff_s = math.inf
        self.measured = False
        self.finished = sim.env.event()

    def _plan(self, sentence_audio_s: list[float], hits: list[int]) -> None:
        """Sentences, and the chunks of frames their audio is animated in."""
        self.sentence_audio_s = sentence_audio_s
        self.hits = hits  # per sentence: 0 none, 1 TTS cache, 2 animation cache
        n = len(sentence_audio_s)
        self.text_ready = [False] * n
        self.audio_done = [False] * n
        fps, chunk_frames = self.fps, self.sim.chunk_frames
        self.chunks: list[int] = []  # frames per chunk
        self.chunk_sentence: list[int] = []
        for j, audio_s in enumerate(sentence_audio_s):
            frames = max(1, round(audio_s * fps))
            while frames > 0:
                self.chunks.append(min(chunk_frames, frames))
                self.chunk_sentence.append(j)
                frames -= chunk_frames
        self.frames = sum(self.chunks)
        self.animated = [False] * len(self.chunks)

    def shorten(self, sentences: int, first_audio_s: float | None = None) -> None:
        """Speak only the first ``sentences`` (a capped reply; ``first_audio_s``: a first
        sentence cut short). Only before the reply's first sentence is ready."""
        audio = self.sentence_audio_s[:sentences]
        if first_audio_s is not None:
            audio[0] = first_audio_s
        self._plan(audio, self.hits[:sentences])

    # LLM -> TTS
    def on_text(self, j: int) -> None:
        if j == 0:
            self.t_text0 = self.sim.env.now
        self.text_ready[j] = True
        self.try_tts()

    def try_tts(self) -> None:
        sim = self.sim
        while (
            self.tts_next < len(self.text_ready)
            and self.text_ready[self.tts_next]
            and self.tts_inflight < sim.tts_inflight
        ):
            j = self.tts_next
            self.tts_next += 1
            if self.hits[j] or sim.tts is None:
                self.on_audio(j)
                continue
            self.tts_inflight += 1
            request = sim.tts.submit(self.sentence_audio_s[j])
            request.on_done(lambda j=j: self._tts_done(j))

    def _tts_done(self, j: int) -> None:
        self.tts_inflight -= 1
        self.on_audio(j)
        self.try_tts()

    # TTS -> animator
    def on_audio(self, j: int) -> None:
        if j == 0:
            self.t_audio0 = self.sim.env.now
        self.audio_done[j] = True
        self.try_anim()

    def try_anim(self) -> None:
        sim = self.sim
        while (
            self.anim_next < len(self.chunks)
            and self.audio_done[self.chunk_sentence[self.anim_next]]
            and self.anim_inflight < sim.anim_inflight
        ):
            c = self.anim_next
            self.anim_next += 1
            if self.hits[self.chunk_sentence[c]] == 2:
                self.on_animated(c)
                continue
            self.anim_inflight += 1
            request = sim.animator.submit(self.chunks[c])
            request.on_done(lambda c=c: self._anim_done(c))

    def _anim_done(self, c: int) -> None:
        self.anim_inflight -= 1
        self.on_animated(c)
        self.try_anim()

    # animator -> encoder (one per session, chunks in order)
    def on_animated(self, c: int) -> None:
        if c == 0:
            self.t_anim0 = self.sim.env.now
        self.animated[c] = True
        self.try_encode()

    def try_encode(self) -> None:
        sim = self.sim
        encoder = sim.encoder
        while self.enc_next < len(self.chunks) and self.animated[self.enc_next]:
            c = self.enc_next
            if encoder is None:
                self.enc_next += 1
                self.on_ready(c, sim.env.now)
            elif isinstance(encoder, PerSessionStage) and not encoder.contended:
                # Uncontended: the session's encoder is a single server; no events needed.
                self.enc_next += 1
                start = max(sim.env.now, self.enc_free_s)
                self.enc_free_s = start + encoder.duration_s(self.chunks[c])
                self.on_ready(c, self.enc_free_s)
            else:
                if self.enc_free_s < 0:
                    return  # the previous chunk is still being encoded
                self.enc_free_s = -1.0
                request = encoder.submit(self.chunks[c])
                request.on_done(lambda c=c: self._encoded(c))
                return

    def _encoded(self, c: int) -> None:
        self.enc_next += 1
        self.enc_free_s = 0.0
        self.on_ready(c, self.sim.env.now)
        self.try_encode()

    # encoder -> viewer: playback at fps, stalling when a chunk is late
    def on_ready(self, c: int, ready_s: float) -> None:
        duration_s = self.chunks[c] / self.fps
        ready_s = max(ready_s, self.t_ref)  # a speculative reply is held until confirmed
        if c == 0:
            self.ttff_s = ready_s - self.t_ref + self.sim.delivery_s
            self.start_s = ready_s
            self.end_s = ready_s + duration_s
        else:
            if ready_s > self.end_s:
                self.stall_s += ready_s - self.end_s
                self.sim.frame_meter.stalled(ready_s - self.end_s, self.fps)
                self.end_s = ready_s
            self.end_s += duration_s
        if c == len(self.chunks) - 1:
            self.finished.succeed()
