"""Stop sequences of chat completions, on the real engine with a scripted model."""

from __future__ import annotations

import asyncio

import pytest

from talkface.engines import Engine
from talkface.errors import BackendError
from talkface.llm.base import ChatMessage, GenerationRequest, GenerationStats
from talkface.services.chat import ChatPlan, ChatRun

pytestmark = pytest.mark.unit


async def test_stop_sequences_split_across_deltas_are_cut() -> None:
    """The text is cut before a stop sequence even when it arrives in pieces."""
    pieces = ["Apples, pea", "rs\n", "\nEND", "ing that never shows"]

    async def backend(requests: list[GenerationRequest]) -> list[GenerationStats]:
        for request in requests:
            for piece in pieces:
                request.stream.put(piece)
                await asyncio.sleep(0)
            request.stream.close()
        return [GenerationStats(prompt_tokens=5, completion_tokens=len(pieces))]

    engine: Engine[GenerationRequest, GenerationStats] = Engine("llm", backend)
    try:
        for stops, expected in [(("\n\nEND",), "Apples, pears"), (("pears",), "Apples, "),
                                (("never",), "Apples, pears\n\nENDing that "),
                                ((), "".join(pieces))]:
            run = ChatRun(engine, ChatPlan(messages=(ChatMessage(role="user", content="hi"),),
                                           max_tokens=10, temperature=0.0, stops=stops))
            await run.start()
            streamed = [d async for d in run.deltas()]
            assert "".join(streamed) == run.text == expected
            assert run.stopped == bool(stops)
    finally:
        await engine.aclose()


async def test_a_model_that_fails_before_writing_fails_the_start_not_the_stream() -> None:
    """So the server can still answer with an HTTP error instead of a broken stream."""

    async def backend(requests: list[GenerationRequest]) -> list[GenerationStats]:
        raise RuntimeError("model crashed")

    engine: Engine[GenerationRequest, GenerationStats] = Engine("llm", backend)
    try:
        run = ChatRun(engine, ChatPlan(messages=(ChatMessage(role="user", content="hi"),),
                                       max_tokens=10, temperature=0.0, stops=()))
        with pytest.raises(BackendError, match="model crashed"):
            await run.start()
    finally:
        await engine.aclose()


async def test_a_client_that_leaves_a_stream_stops_the_model() -> None:
    """Closing the event stream (what the server does when the client disconnects) stops
    the generation at its next token, freeing the engine for others."""
    from talkface.api.routes.openai import _chunk_events

    stopped = asyncio.Event()

    async def endless(requests: list[GenerationRequest]) -> list[GenerationStats]:
        request = requests[0]
        while not request.stream.cancelled:
            request.stream.put("and then ")
            await asyncio.sleep(0.001)
        request.stream.close()
        stopped.set()
        return [GenerationStats(finish_reason="cancelled")]

    engine: Engine[GenerationRequest, GenerationStats] = Engine("llm", endless)
    try:
        run = ChatRun(engine, ChatPlan(messages=(ChatMessage(role="user", content="story"),),
                                       max_tokens=10_000, temperature=0.0, stops=()))
        await run.start()
        events = _chunk_events(run, "chatcmpl-1", 0, "x", include_usage=False)
        assert '"role":"assistant"' in await anext(events)
        assert "and then" in await anext(events)
        await events.aclose()
        async with asyncio.timeout(10):
            await stopped.wait()
    finally:
        await engine.aclose()
