"""The OpenAI-compatible backend against a real server: llama-cpp-python's own, on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from talkface.errors import BackendError, ConfigError
from talkface.llm.base import ChatMessage, GenerationRequest, LLMSettings, TokenStream
from talkface.llm.openai_http import OpenAICompatibleLLM

pytestmark = [pytest.mark.integration, pytest.mark.serving]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def ask(llm: OpenAICompatibleLLM, question: str, max_tokens: int = 24) -> tuple[str, object]:
    stream = TokenStream()
    request = GenerationRequest(
        messages=(ChatMessage(role="system", content="Answer briefly."),
                  ChatMessage(role="user", content=question)),
        stream=stream, max_tokens=max_tokens,
    )
    job = asyncio.ensure_future(llm.generate_batch([request]))
    text = "".join([delta async for delta in stream])
    (stats,) = await job
    return text, stats


async def test_replies_stream_from_a_real_openai_compatible_server(llama_server: str) -> None:
    llm = OpenAICompatibleLLM.load(LLMSettings(backend="openai", url=llama_server, model="smollm2"))
    text, stats = await ask(llm, "Say hello to the museum visitors.")
    assert len(text.split()) >= 2
    assert stats.completion_tokens > 1
    await llm.aclose()


async def test_concurrent_sessions_stream_at_once(llama_server: str) -> None:
    llm = OpenAICompatibleLLM.load(LLMSettings(backend="openai", url=llama_server, model="smollm2"))
    answers = await asyncio.gather(*(ask(llm, q, 8) for q in ("Name a colour.", "Name a fruit.")))
    assert all(text.strip() for text, _ in answers)
    await llm.aclose()


async def test_a_server_that_is_down_is_a_clear_retryable_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatibleLLM.load(LLMSettings(backend="openai", url=url))
    with pytest.raises(BackendError, match="not reachable") as info:
        await ask(llm, "Hello?")
    assert info.value.retryable
    await llm.aclose()


async def test_a_server_that_hangs_times_out_with_a_clear_error() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llm = OpenAICompatibleLLM.load(LLMSettings(
        backend="openai", url=f"http://127.0.0.1:{port}/v1", first_token_timeout_s=1.0))
    started = time.monotonic()
    with pytest.raises(BackendError, match="sent nothing for 1 s; it may be hung"):
        await ask(llm, "Hello?")
    assert time.monotonic() - started < 10
    await llm.aclose()
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_an_http_error_carries_the_servers_message(llama_server: str) -> None:
    llm = OpenAICompatibleLLM.load(LLMSettings(backend="openai", url=llama_server + "/nowhere"))
    with pytest.raises(BackendError, match="HTTP 404"):
        await ask(llm, "Hello?")
    await llm.aclose()


def test_a_missing_or_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs the server's URL"):
        OpenAICompatibleLLM.load(LLMSettings(backend="openai"))
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAICompatibleLLM.load(LLMSettings(backend="openai", url="ftp://x"))
