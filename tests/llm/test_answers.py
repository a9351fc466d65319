"""Real answers from the packaged models: no loops, and each ends at a sentence."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from talkface.llm.base import (
    DEFAULT_PERSONA,
    ChatMessage,
    GenerationRequest,
    LLMSettings,
    TokenStream,
)
from talkface.llm.guard import repeated_phrase
from talkface.llm.llama_cpp import LlamaCppLLM
from talkface.text.sentences import ends_sentence

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Questions whose answers run past a 40-token budget, or that small models loop on.
PROMPTS = (
    "Tell me about the history of Rome.",
    "What can you do for me?",
    "What should I eat for dinner?",
    "Can you help me with my order?",
    "How do I reset my password?",
)


@pytest.fixture(scope="module", params=["qwen2.5-coder-0.5b", "smollm2"])
def llm(request: pytest.FixtureRequest) -> Iterator[LlamaCppLLM]:
    model = LlamaCppLLM.load(LLMSettings(model=request.param))
    yield model
    asyncio.run(model.aclose())


async def answer(llm: LlamaCppLLM, question: str) -> tuple[str, str]:
    stream = TokenStream()
    request = GenerationRequest(
        messages=(ChatMessage(role="system", content=DEFAULT_PERSONA),
                  ChatMessage(role="user", content=question)),
        stream=stream, max_tokens=40, temperature=0.0,
    )
    job = asyncio.ensure_future(llm.generate_batch([request]))
    text = "".join([delta async for delta in stream])
    (stats,) = await job
    return text, stats.finish_reason


async def test_answers_do_not_loop_and_end_at_a_sentence(llm: LlamaCppLLM) -> None:
    prompts = (*PROMPTS, "请介绍一下长城。") if llm.settings.model.startswith("qwen") else PROMPTS
    reasons = []
    for question in prompts:
        text, reason = await answer(llm, question)
        reasons.append(reason)
        assert repeated_phrase(text) is None, (question, text)
        assert ends_sentence(text), (question, reason, text)
    # The budget ran out for some of them: the guard trimmed, rather than nothing to trim.
    assert "length" in reasons
