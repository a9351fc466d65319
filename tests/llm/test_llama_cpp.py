"""The embedded LLM: the default packaged model (Qwen2.5-Coder-0.5B), through llama.cpp."""

from __future__ import annotations

import asyncio

import pytest

from talkface.engines import Engine
from talkface.errors import ConfigError
from talkface.llm.base import ChatMessage, GenerationRequest, LLMSettings, TokenStream
from talkface.llm.llama_cpp import LlamaCppLLM, model_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    return LlamaCppLLM.load(LLMSettings(max_reply_tokens=40))


def prompt(question: str, persona: str = "You are a helpful assistant.") -> tuple[ChatMessage, ...]:
    return (ChatMessage(role="system", content=persona), ChatMessage(role="user", content=question))


async def generate(llm: LlamaCppLLM, messages, max_tokens: int = 40, stop_after: int | None = None,
                   temperature: float = 0.3):
    stream = TokenStream()
    request = GenerationRequest(messages=messages, stream=stream, max_tokens=max_tokens,
                                temperature=temperature)
    generation = asyncio.ensure_future(llm.generate_batch([request]))
    deltas = []
    async for delta in stream:
        deltas.append(delta)
        if stop_after is not None and len(deltas) >= stop_after:
            stream.cancel()
    (stats,) = await generation
    return deltas, stats


async def test_the_reply_streams_token_by_token(llm: LlamaCppLLM) -> None:
    deltas, stats = await generate(llm, prompt("What is the capital of France?"))
    assert len(deltas) > 3
    assert "paris" in "".join(deltas).lower()
    # The first sentence streams token by token; later ones a sentence at a time.
    assert stats.completion_tokens >= len(deltas)


async def test_the_shared_prefix_is_not_evaluated_again(llm: LlamaCppLLM) -> None:
    persona = "You are Ava, a cheerful guide at the city museum. Keep answers short and kind."
    await generate(llm, prompt("Where is the cafe?", persona), max_tokens=4)
    _, stats = await generate(llm, prompt("When do you open?", persona), max_tokens=4)
    assert stats.evaluated_prompt_tokens is not None
    # Only the new question (and template tokens around it) needed evaluating.
    assert stats.evaluated_prompt_tokens < stats.prompt_tokens / 2


async def test_sessions_taking_turns_keep_their_own_history_cached() -> None:
    """Two conversations alternate; each turn evaluates only its new words, and a restored
    conversation answers exactly as if it had never been swapped out."""
    persona = "You are a helpful assistant. Answer briefly."

    def turn(history: tuple[ChatMessage, ...], question: str) -> tuple[ChatMessage, ...]:
        return (*history, ChatMessage(role="user", content=question))

    paris = turn((ChatMessage(role="system", content=persona),),
                 "Tell me about the long history of Paris, its rivers and its bridges. " * 3)
    rice = turn((ChatMessage(role="system", content=persona),),
                "What is the best way to cook rice, and how much water does it need? " * 3)

    async def paris_twice(other: tuple[ChatMessage, ...] | None):
        # Fresh models, so both runs evaluate the first prompt in the same chunks (a
        # different split changes the floats a little, and greedy text with them).
        llm = LlamaCppLLM.load(LLMSettings(max_reply_tokens=40))
        try:
            first, _ = await generate(llm, paris, max_tokens=12, temperature=0.0)
            if other is not None:
                await generate(llm, other, max_tokens=12, temperature=0.0)
            follow_up = turn((*paris, ChatMessage(role="assistant", content="".join(first))),
                             "And London?")
            return await generate(llm, follow_up, max_tokens=12, temperature=0.0)
        finally:
            await llm.aclose()

    swapped_back, stats = await paris_twice(rice)
    uninterrupted, _ = await paris_twice(None)
    assert stats.evaluated_prompt_tokens is not None
    assert stats.prompt_tokens > 80
    assert stats.evaluated_prompt_tokens < 20, stats
    assert "".join(swapped_back) == "".join(uninterrupted)


async def test_a_cancelled_reader_stops_the_generation(llm: LlamaCppLLM) -> None:
    # A long first sentence: it streams token by token (later ones a sentence at a time).
    _, stats = await generate(llm, prompt("Tell me a long story about a dragon."),
                                   max_tokens=80, stop_after=3)
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens <= 5


async def test_sessions_share_the_engine_and_are_served_in_turn(llm: LlamaCppLLM) -> None:
    engine = Engine("llm", llm.generate_batch)

    async def ask(question: str) -> str:
        stream = TokenStream()
        job = asyncio.ensure_future(engine.submit(
            GenerationRequest(messages=prompt(question), stream=stream, max_tokens=12)))
        text = "".join([delta async for delta in stream])
        await job
        return text

    answers = await asyncio.gather(
        *(ask(q) for q in ("Say hello.", "Name a colour.", "Name a fruit."))
    )
    assert all(answer.strip() for answer in answers)
    await engine.aclose()


def test_a_wrong_model_path_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="neither a GGUF file"):
        model_path(str(tmp_path / "missing.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a GGUF model file"):
        model_path(str(fake))


async def test_a_conversation_longer_than_the_context_keeps_answering() -> None:
    """The memory's budget holds for the real chat template (a soak found turns failing
    with "Requested tokens exceed context window" once a session's history filled it)."""
    from talkface.llm.memory import ConversationMemory
    from talkface.pipeline.reply import with_language_hint

    context_tokens, reply_tokens = 512, 32
    small = LlamaCppLLM.load(LLMSettings(context_tokens=context_tokens,
                                         max_reply_tokens=reply_tokens))
    memory = ConversationMemory("You are a helpful assistant. Answer in one short sentence.",
                                budget_tokens=context_tokens, reply_tokens=reply_tokens,
                                count_tokens=small.count_tokens)
    for i in range(60):
        memory.record(f"Question {i}: what is {i} plus {i}?", f"{i} plus {i} is {2 * i}.")
    messages = with_language_hint(memory.prompt("请再说一遍。"), "zh")
    assert len(messages) > 6  # the history was cut to fit, not dropped
    deltas, stats = await generate(small, messages, max_tokens=reply_tokens)
    assert deltas and stats.finish_reason in ("stop", "length")
    assert stats.prompt_tokens + reply_tokens <= context_tokens


def odd_text(rng, length: int) -> str:
    """Text a fuzzer might send: ASCII, accents, CJK and astral characters mixed."""
    ranges = ((32, 126), (0x80, 0x2FF), (0x4E00, 0x9FFF), (0x10000, 0x10FFFF))
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(length))


async def test_a_prompt_is_counted_as_llama_cpp_evaluates_it(llm: LlamaCppLLM) -> None:
    """The count that fits a request to the context is the model's own chat template,
    tokenised: a fuzzer found requests whose per-message estimate fell 30 tokens short
    (the template's default system prompt, odd characters), which overflowed the context."""
    import random

    rng = random.Random(7)
    for _ in range(6):
        messages = tuple(
            ChatMessage(role=rng.choice(("user", "assistant", "system")),
                        content=odd_text(rng, rng.randint(0, 60)))
            for _ in range(rng.randint(1, 5))
        )
        _, stats = await generate(llm, messages, max_tokens=1)
        assert llm.count_prompt_tokens(messages) == stats.prompt_tokens


async def test_a_reply_that_runs_into_the_end_of_the_context_ends_cleanly() -> None:
    """A reply that never stops by itself ends at the context's end, "length", even in
    text made of multi-byte characters (llama-cpp-python skips its length check inside a
    UTF-8 character: the API fuzz test in CI found "failed to find a memory slot")."""
    import functools

    from talkface.api.schemas import ChatCompletionRequest
    from talkface.config import load_settings
    from talkface.services.chat import plan_chat

    settings = load_settings(llm={"context_tokens": 256})
    small = LlamaCppLLM.load(settings.llm)
    llama = small._llama
    end_tokens = {llama.token_eos(), *llama.tokenize(b"<|im_end|><|endoftext|>", add_bos=False,
                                                      special=True)}
    # The worst case, forced on the real model: it may never end its reply by itself.
    llama.create_chat_completion = functools.partial(
        llama.create_chat_completion, logit_bias={t: -100.0 for t in end_tokens})
    for request in (
        "请用中文写一篇很长的文章，介绍中国的历史、文化、饮食、城市和风景，不要重复。",
        "Write a long story about a dragon, using many emoji like 🐉🔥🏰👑 in every sentence. ",
    ):
        # Asked at length, so the reply has some 30 tokens left before the context ends.
        question = request
        while small.count_tokens(question + request) < 256 - 60:
            question += request
        body = ChatCompletionRequest.model_validate({
            "model": "talkface", "max_tokens": 5000,
            "messages": [{"role": "user", "content": question}],
        })
        plan = plan_chat(body, small, settings)
        deltas, stats = await generate(small, plan.messages, max_tokens=plan.max_tokens,
                                       temperature=0.0)
        assert stats.finish_reason == "length", stats
        assert stats.prompt_tokens + stats.completion_tokens <= 256
        assert deltas


async def test_a_cut_history_is_moved_up_not_evaluated_again() -> None:
    """When a session's history is cut to fit, the kept turns stay in the KV cache (moved
    up), even after another session used the model in between: a soak found four
    sessions' cuts each evaluating ~2000 tokens again (half a minute apiece on one core),
    so that other sessions' answers waited over a minute."""
    from talkface.llm.memory import ConversationMemory

    context_tokens, reply_tokens = 512, 24
    small = LlamaCppLLM.load(LLMSettings(context_tokens=context_tokens,
                                         max_reply_tokens=reply_tokens))
    memory = ConversationMemory("You are a helpful assistant. Answer in one short sentence.",
                                budget_tokens=context_tokens, reply_tokens=reply_tokens,
                                count_tokens=small.count_tokens)
    other = prompt("Name a colour.")
    cuts, previous_length = [], 0
    for i in range(30):
        messages = memory.prompt(f"Question {i}: what is {i} plus {i}? Answer with the sum.")
        deltas, stats = await generate(small, messages, max_tokens=reply_tokens, temperature=0)
        if len(messages) < previous_length:  # cut: only the new question is evaluated
            cuts.append(i)
            # (its message frame and the end of the previous reply: ~10 tokens more)
            assert stats.evaluated_prompt_tokens <= small.count_tokens(messages[-1].content) + 16
        memory.record(messages[-1].content, "".join(deltas))
        previous_length = len(messages)
        await generate(small, other, max_tokens=4)  # another session in between
        if len(cuts) == 2:
            break
    assert len(cuts) == 2, "the history was never cut: make the test's turns longer"
    # The moved-up history still means what it said: the model answers from it.
    question = memory.prompt("What did you say the sum of 3 plus 3 was, or the last sum you gave?")
    deltas, _ = await generate(small, question, max_tokens=reply_tokens, temperature=0)
    assert "".join(deltas).strip()


async def test_replies_take_turns_by_sentence_and_read_as_if_alone() -> None:
    """Two replies asked at once through the engine: the second's first words come before
    the first reply is done, and each reads exactly as it does when run alone."""
    questions = (prompt("Describe the seasons of the year, one sentence for each season."),
                 prompt("Explain how to make tea, in four short steps, one sentence each."))

    async def ask(engine: Engine, messages) -> tuple[str, float, float]:
        """The reply, when its first words came and when its generation was done."""
        loop = asyncio.get_running_loop()
        stream = TokenStream()
        job = asyncio.ensure_future(engine.submit(GenerationRequest(
            messages=messages, stream=stream, max_tokens=60, temperature=0.0)))
        timed = [(loop.time(), delta) async for delta in stream]
        await job
        return "".join(d for _, d in timed), timed[0][0], loop.time()

    async def run(together: bool) -> tuple[list[tuple[str, float, float]], int]:
        llm = LlamaCppLLM.load(LLMSettings(max_reply_tokens=60))  # fresh: same prompt chunks
        engine = Engine("llm", llm.generate_batch, llm.settings.batching_options())
        try:
            if together:
                first = asyncio.ensure_future(ask(engine, questions[0]))
                await asyncio.sleep(0)  # the first is asked first
                replies = list(await asyncio.gather(first, ask(engine, questions[1])))
            else:
                replies = [await ask(engine, q) for q in questions]
            return replies, llm.switches
        finally:
            await engine.aclose()
            await llm.aclose()

    alone, alone_switches = await run(together=False)
    together, switches = await run(together=True)
    assert alone_switches == 0 and switches >= 1
    (_, _, first_done), (_, second_first_words, _) = together
    assert second_first_words < first_done, "the second reply waited for the whole first one"
    assert [text for text, _, _ in together] == [text for text, _, _ in alone]


async def test_a_reply_set_aside_and_then_cancelled_ends_and_leaves_no_file(
        llm: LlamaCppLLM) -> None:
    """Barge-in on a reply that waits for its turn: it ends as cancelled, its saved KV
    file goes, and the other reply is not disturbed."""
    engine = Engine("llm", llm.generate_batch, llm.settings.batching_options())
    streams = [TokenStream(), TokenStream()]
    jobs = [asyncio.ensure_future(engine.submit(GenerationRequest(
        messages=prompt(question), stream=stream, max_tokens=60, temperature=0.0)))
        for question, stream in zip(("Describe the seasons of the year, one sentence each.",
                                     "Explain how to make tea, one sentence for each step."),
                                    streams, strict=True)]
    await asyncio.sleep(0)
    first_words = ""
    async for delta in streams[1]:  # the second speaks its first sentence...
        first_words += delta
        if first_words.rstrip().endswith((".", "!", "?", ":")):
            break
    streams[1].cancel()  # ...and its listener barges in while it waits for its turn
    kept = "".join([delta async for delta in streams[0]])
    first, second = await asyncio.gather(*jobs)
    assert first_words and kept and first.finish_reason != "cancelled"
    assert second.finish_reason == "cancelled"
    # What is left on disk is the finished conversations' states, nothing set aside.
    folder = llm._saved.new_path().parent
    assert sum(p.stat().st_size for p in folder.glob("*.kv")) == llm.saved_state_bytes()
    await engine.aclose()


def test_a_reply_left_behind_by_a_closed_event_loop_does_not_fail_the_next() -> None:
    """Tests (and a restarted server) run each on an event loop of their own with the same
    loaded model: a reply still under way when its loop closed must not fail the next."""
    llm = LlamaCppLLM.load(LLMSettings(max_reply_tokens=60))

    async def start_and_leave() -> None:
        stream = TokenStream()
        reply = asyncio.ensure_future(llm.generate_batch([GenerationRequest(
            messages=prompt("Tell me a long story about a dragon and a knight."),
            stream=stream, max_tokens=60)]))
        async for _ in stream:
            break  # its first words, then the loop ends with the reply under way
        assert not reply.done()

    try:
        asyncio.run(start_and_leave())
        deltas, stats = asyncio.run(generate(llm, prompt("Say hello."), max_tokens=8))
        assert stats.finish_reason != "error" and "".join(deltas).strip()
    finally:
        asyncio.run(llm.aclose())
