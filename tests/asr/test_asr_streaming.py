"""The streaming transcriber's scheduling, with an ASR whose answers the test controls.

The real model behind the same transcriber is exercised in test_asr_live.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from talkface.asr.base import ASRRequest
from talkface.asr.streaming import StreamingTranscriber
from talkface.clock import ManualClock
from talkface.errors import Overloaded
from talkface.messages import Transcript
from talkface.vad.endpoint import Utterance

pytestmark = pytest.mark.unit

MS = 1_000_000


class ScriptedASR:
    """An ASR whose every request waits until the test answers it."""

    def __init__(self) -> None:
        self.requests: list[ASRRequest] = []
        self.futures: list[asyncio.Future[Transcript]] = []
        self.cancelled = 0

    async def submit(self, request: ASRRequest) -> Transcript:
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self.requests.append(request)
        self.futures.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def answer(self, index: int, text: str, language: str = "en") -> None:
        request = self.requests[index]
        self.futures[index].set_result(
            Transcript(
                text=text,
                is_final=request.is_final,
                language=language,
                end_pts_ns=request.end_pts_ns,
            )
        )

    def fail(self, index: int, error: Exception) -> None:
        self.futures[index].set_exception(error)

    @property
    def in_flight(self) -> int:
        return sum(not f.done() for f in self.futures)


def utterance(seconds: float, start_ns: int = 0) -> Utterance:
    samples = round(seconds * 16_000)
    return Utterance(
        audio=np.full(samples, 0.1, dtype=np.float32),
        start_pts_ns=start_ns,
        end_pts_ns=start_ns + samples * 62_500,
        speech_start_pts_ns=start_ns,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_partials_come_at_most_every_interval_and_one_at_a_time() -> None:
    asr, clock = ScriptedASR(), ManualClock()
    async with StreamingTranscriber(asr.submit, partial_interval_ms=1000, clock=clock) as st:
        st.update(utterance(0.5))  # too little audio for a partial
        await settle()
        assert asr.requests == []

        st.update(utterance(1.0))
        await settle()
        assert len(asr.requests) == 1 and not asr.requests[0].is_final

        for step in range(1, 20):  # the user goes on speaking; the first pass is slow
            clock.advance(100 * MS)
            st.update(utterance(1.0 + step * 0.1))
            await settle()
        assert len(asr.requests) == 1 and asr.in_flight == 1

        asr.answer(0, "what time")
        await settle()
        assert len(asr.requests) == 2  # the interval had passed: the next one starts
        assert len(asr.requests[1].audio) > len(asr.requests[0].audio)

        clock.advance(300 * MS)
        asr.answer(1, "what time is")
        st.update(utterance(3.0))
        await settle()
        assert len(asr.requests) == 2  # only 300 ms since the last start

        clock.advance(700 * MS)
        st.update(utterance(3.1))
        await settle()
        assert len(asr.requests) == 3
        assert asr.in_flight == 1

        partials = []
        async for partial in st.partials():
            partials.append(partial)
            if len(partials) == 2:
                break
    assert [p.text for p in partials] == ["what time", "what time is"]
    assert all(not p.is_final for p in partials)
    assert asr.cancelled == 1  # closing cancelled the third pass


async def test_the_final_pass_starts_at_the_pause_and_is_reused_at_the_end() -> None:
    asr = ScriptedASR()
    async with StreamingTranscriber(asr.submit, partial_interval_ms=0) as st:
        paused = utterance(2.0)
        st.pause(paused)
        await settle()
        assert len(asr.requests) == 1 and asr.requests[0].is_final
        asr.answer(0, "Turn off the lights.")
        await settle()
        final = await st.finish(paused)
    assert final.text == "Turn off the lights." and final.is_final
    assert len(asr.requests) == 1  # nothing more ran after the end


async def test_the_end_waits_for_a_speculative_pass_still_running() -> None:
    asr = ScriptedASR()
    async with StreamingTranscriber(asr.submit) as st:
        paused = utterance(2.0)
        st.pause(paused)
        await settle()
        finishing = asyncio.create_task(st.finish(paused))
        await settle()
        assert not finishing.done()
        asr.answer(0, "Hello.")
        final = await finishing
    assert final.text == "Hello." and len(asr.requests) == 1


async def test_speech_that_resumes_after_a_pause_gets_a_fresh_final_pass() -> None:
    asr = ScriptedASR()
    async with StreamingTranscriber(asr.submit, partial_interval_ms=0) as st:
        st.pause(utterance(1.5))
        await settle()
        asr.answer(0, "Book a table")
        await settle()
        partial = await anext(st.partials())
        assert partial.text == "Book a table" and not partial.is_final

        whole = utterance(3.0)
        finishing = asyncio.create_task(st.finish(whole))
        await settle()
        assert len(asr.requests) == 2 and len(asr.requests[1].audio) == len(whole.audio)
        asr.answer(1, "Book a table for four.")
        final = await finishing
    assert final.text == "Book a table for four." and final.is_final


async def test_a_pause_or_an_end_cancels_a_partial_in_flight() -> None:
    asr, clock = ScriptedASR(), ManualClock()
    async with StreamingTranscriber(asr.submit, clock=clock) as st:
        st.update(utterance(1.2))
        await settle()
        paused = utterance(1.4)
        st.pause(paused)
        await settle()
        assert asr.cancelled == 1
        assert [r.is_final for r in asr.requests] == [False, True]
        assert asr.in_flight == 1

        finishing = asyncio.create_task(st.finish(utterance(2.0)))  # speech went on
        await settle()
        assert asr.cancelled == 2 and asr.in_flight == 1
        asr.answer(2, "done")
        assert (await finishing).text == "done"


async def test_the_language_of_a_long_enough_partial_is_kept_for_the_turn() -> None:
    asr, clock = ScriptedASR(), ManualClock()
    async with StreamingTranscriber(asr.submit, clock=clock) as st:
        st.update(utterance(1.0))
        await settle()
        asr.answer(0, "你好", language="zh")  # too short to decide
        await settle()
        clock.advance(1000 * MS)
        st.update(utterance(2.0))
        await settle()
        assert asr.requests[1].language is None
        asr.answer(1, "你好请问", language="zh")
        await settle()
        assert st.language == "zh"
        finishing = asyncio.create_task(st.finish(utterance(2.5)))
        await settle()
        assert asr.requests[-1].language == "zh"
        asr.answer(len(asr.requests) - 1, "你好请问现在几点")
        await finishing


async def test_a_failed_speculative_pass_is_run_again_at_the_end() -> None:
    asr = ScriptedASR()
    async with StreamingTranscriber(asr.submit) as st:
        paused = utterance(2.0)
        st.pause(paused)
        await settle()
        asr.fail(0, Overloaded("busy"))
        await settle()
        finishing = asyncio.create_task(st.finish(paused))
        await settle()
        assert len(asr.requests) == 2
        asr.answer(1, "Hello.")
        assert (await finishing).text == "Hello."


async def test_a_failed_final_pass_reaches_the_caller() -> None:
    asr = ScriptedASR()
    async with StreamingTranscriber(asr.submit) as st:
        finishing = asyncio.create_task(st.finish(utterance(1.0)))
        await settle()
        asr.fail(0, Overloaded("the ASR queue is full"))
        with pytest.raises(Overloaded):
            await finishing


async def test_closing_cancels_the_pass_in_flight_and_ends_partials() -> None:
    asr = ScriptedASR()
    st = StreamingTranscriber(asr.submit)
    st.update(utterance(1.0))
    await settle()
    reader = asyncio.create_task(anext(st.partials(), None))
    await st.aclose()
    assert asr.cancelled == 1
    assert await reader is None
    st.update(utterance(2.0))  # a late update after close is ignored
    await settle()
    assert len(asr.requests) == 1
    await st.aclose()  # idempotent


async def test_a_cancelled_finish_leaves_nothing_running_after_close() -> None:
    asr = ScriptedASR()
    st = StreamingTranscriber(asr.submit)
    paused = utterance(1.0)
    st.pause(paused)
    await settle()
    finishing = asyncio.create_task(st.finish(paused))
    await settle()
    finishing.cancel()  # barge-in while waiting for the final
    with pytest.raises(asyncio.CancelledError):
        await finishing
    await st.aclose()
    assert asr.in_flight == 0
