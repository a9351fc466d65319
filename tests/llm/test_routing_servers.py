"""Tiered routing with real models: the embedded small LLM (SmolLM2, llama.cpp in this
process) and a large one behind a real OpenAI-compatible server on loopback
(llama-cpp-python's own server on the Qwen GGUF), which is stopped half-way.

TTS and the animator are fakes: what is tested is who answers, not how it sounds.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from talkface.api.app import create_app
from talkface.clock import ManualClock
from talkface.config import Settings
from talkface.conversation import Conversation, ConversationOptions
from talkface.runtime import Runtime
from talkface.testing import fake_settings, register_fakes

pytestmark = [pytest.mark.serving, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.timeout(180)]

KEY = "tfk_unit_test_key_0001"
LARGE = "qwen2.5-coder-0.5b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def large_server(tmp_path: Path, start_llama: Callable[..., tuple[subprocess.Popen[bytes], str]]
                 ) -> Iterator[subprocess.Popen[bytes]]:
    """The large model's server; the test stops it when it wants to."""
    process, url = start_llama(LARGE, tmp_path / "large-server.log", n_ctx=1024)
    process.url = url  # type: ignore[attr-defined]
    yield process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch,
             large_server: subprocess.Popen[bytes]) -> Settings:
    register_fakes(monkeypatch.setitem)
    return fake_settings(
        llm={"backend": "llama-cpp", "model": "smollm2", "max_reply_tokens": 12},
        server={"api_keys": (KEY,)},
        routing={"large_url": large_server.url, "large_model": LARGE,  # type: ignore[attr-defined]
                 "first_token_timeout_s": 90.0},
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as runtime:
        yield runtime


async def ask(http: httpx.AsyncClient, question: str) -> tuple[str, str | None, str]:
    """(route header, fallback header, reply text) of one chat completion."""
    response = await http.post("/v1/chat/completions", json={
        "model": "any", "max_tokens": 12, "messages": [{"role": "user", "content": question}]})
    assert response.status_code == 200, response.text
    text = response.json()["choices"][0]["message"]["content"]
    return (response.headers["x-talkface-route"],
            response.headers.get("x-talkface-route-fallback"), text)


async def live_turn(runtime: Runtime, question: str) -> tuple[str | None, bool, str]:
    """(route, fallback, reply) of one typed turn of a live conversation."""
    talk = Conversation(runtime, ConversationOptions(voice="fake", seed=1), clock=ManualClock())
    async with talk:
        await talk.send_text(question)
        await talk.wait_for_answer()
        await talk.end_input()
        _ = [message async for message in talk.messages()]
    (turn,) = talk.turns
    return turn.route, turn.fallback, turn.reply


def requests(runtime: Runtime) -> dict[str, int]:
    """Requests each LLM engine took so far."""
    return {e.name: e.stats.requests for e in runtime.engines if e.name.startswith("llm")}


def route_counts(metrics: str) -> dict[str, float]:
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("talkface_llm_route_total{"):
            route = line.split('route="')[1].split('"')[0]
            counts[route] = float(line.rsplit(" ", 1)[1])
    return counts


async def test_questions_go_where_the_policy_says_and_fall_back_when_the_large_is_down(
        runtime: Runtime, large_server: subprocess.Popen[bytes]) -> None:
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://talkface.test", timeout=120.0,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        # Small talk stays on the embedded model; a hard question goes to the server.
        route, fallback, text = await ask(http, "Hello, who are you?")
        assert (route, fallback) == ("small", None) and text.strip()
        route, fallback, text = await ask(http, "Explain why the sky is blue.")
        assert (route, fallback) == ("large", None) and text.strip()
        turn_route, turn_fallback, reply = await live_turn(runtime, "Why do cats purr?")
        assert (turn_route, turn_fallback) == ("large", False) and reply
        assert requests(runtime)["llm-large"] == 2
        small_before = requests(runtime)["llm"]

        large_server.terminate()  # the large model goes down
        large_server.wait(timeout=30)

        route, fallback, text = await ask(http, "Explain how tides work.")
        assert (route, fallback) == ("small", "large") and text.strip()
        turn_route, turn_fallback, reply = await live_turn(runtime, "Why is ice slippery?")
        assert (turn_route, turn_fallback) == ("small", True) and reply
        # The small model answered both; the large one was tried for each.
        assert requests(runtime) == {"llm": small_before + 2, "llm-large": 4}
        metrics = (await http.get("/metrics")).text
    assert route_counts(metrics) == {"faq": 0, "small": 1, "large": 2, "large_fallback": 2}
