"""A turn answered from the FAQ: spoken and shown as any answer, with no LLM call, and
the OpenAI endpoint's route header (fakes and a bag-of-words embedder; the real
embedder is in test_faq_model.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from talkface.api.app import create_app
from talkface.clock import ManualClock
from talkface.config import Settings
from talkface.conversation import Conversation, ConversationOptions
from talkface.faq.registry import FAQ_EMBEDDERS
from talkface.messages import EndOfTurn, SpeechAudio, VideoFrame
from talkface.registry import BackendEntry
from talkface.runtime import Runtime
from talkface.testing import FakeLLM, fake_settings, register_fakes

pytestmark = pytest.mark.unit

KEY = "tfk_unit_test_key_0001"
ANSWER = "We are open from ten to nine, every day."


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    register_fakes(monkeypatch.setitem)
    monkeypatch.setitem(FAQ_EMBEDDERS, "words",
                        BackendEntry("talkface.faq.testing:WordsEmbedder", "test", ""))
    faq = tmp_path / "faq.yaml"
    faq.write_text("- questions:\n    - What are your opening hours?\n"
                   f"    - When is the shop open?\n  answer: {ANSWER}\n", encoding="utf-8")
    return fake_settings(server={"api_keys": (KEY,)},
                         faq={"file": str(faq), "backend": "words", "min_similarity": 0.6})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as runtime:
        yield runtime


async def test_a_faq_question_is_spoken_from_the_faq_without_calling_the_llm(
        runtime: Runtime) -> None:
    talk = Conversation(runtime, ConversationOptions(voice="fake", seed=1), clock=ManualClock())
    async with talk:
        await talk.send_text("When is the shop open?")
        await talk.wait_for_answer()
        llm = runtime.backends["llm"]
        assert isinstance(llm, FakeLLM) and llm.prompts == []
        await talk.send_text("Tell me about your favourite colour.")
        await talk.wait_for_answer()
        await talk.end_input()
        received = [message async for message in talk.messages()]
    assert [(t.route, t.reply) for t in talk.turns] == [("faq", ANSWER),
                                                        ("small", FakeLLM.reply)]
    first = talk.turns[0].turn_id
    assert [e.turn_id for e in received if isinstance(e, EndOfTurn)] == [first, first + 1]
    # Spoken and animated as any answer.
    assert any(isinstance(m, SpeechAudio) and m.turn_id == first for m in received)
    assert any(isinstance(m, VideoFrame) and m.turn_id == first for m in received)
    assert len(llm.prompts) == 1
    engine = await runtime.llm_engine()
    assert engine.stats.requests == 1  # only the second turn reached the LLM


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_completions_say_which_route_answered(runtime: Runtime,
                                                         stream: bool) -> None:
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://talkface.test",
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        replies = []
        for question in ("What are your opening hours?", "Write me a poem."):
            response = await http.post("/v1/chat/completions", json={
                "model": "any", "stream": stream,
                "messages": [{"role": "user", "content": question}]})
            assert response.status_code == 200, response.text
            replies.append((response.headers["x-talkface-route"], response.text))
    assert [route for route, _ in replies] == ["faq", "small"]
    assert ANSWER in replies[0][1] and ANSWER not in replies[1][1]
    llm = runtime.backends["llm"]
    assert isinstance(llm, FakeLLM) and llm.prompts == ["Write me a poem."]


def test_serve_refuses_a_bad_faq_file_before_starting(tmp_path: Path) -> None:
    from talkface.commands.serve import run_serve
    from talkface.errors import ConfigError

    bad = tmp_path / "faq.yaml"
    bad.write_text("- questions: [a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="entry 1: expected exactly the keys"):
        run_serve(host=None, port=None, workers=1, config_file=None, faq=bad)


async def test_faq_answers_are_spoken_ahead_and_a_hit_reads_its_speech_from_the_cache(
        settings: Settings, tmp_path: Path) -> None:
    from talkface.cache.tts import TTS_HIT_MARK
    from talkface.faq.warm import speak_faq_answers

    cache = settings.cache.model_copy(update={"enabled": True, "dir": tmp_path / "cache"})
    async with Runtime(settings.model_copy(update={"cache": cache})) as runtime:
        assert await speak_faq_answers(runtime) >= 1  # the answer's pieces
        assert await speak_faq_answers(runtime) == 0  # a restart: all cached already
        # A session in the default voice: its FAQ hit cuts the answer the same way.
        talk = Conversation(runtime, ConversationOptions(seed=1), clock=ManualClock())
        async with talk:
            await talk.send_text("When is the shop open?")
            await talk.wait_for_answer()
            await talk.end_input()
            async for _ in talk.messages():
                pass
    (turn,) = talk.turns
    assert turn.route == "faq" and TTS_HIT_MARK in turn.trace.marks_ns
