"""The routing policy (which tier answers a question, and why) and the fallback from an
unreachable large model to the small one (scripted backends; the real servers are in
tests/llm/test_routing_servers.py)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path
from typing import Self

import pytest

from talkface.config import load_settings
from talkface.engines import Engine
from talkface.errors import BackendError, ConfigError
from talkface.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    LLMCapabilities,
    LLMSettings,
    TokenStream,
)
from talkface.llm.routing import (
    DEFAULT_KEYWORDS,
    RouteCounts,
    RoutedLLM,
    RoutingPolicy,
    RoutingSettings,
)

pytestmark = pytest.mark.unit

URL = "http://gpu-box:8000/v1"


def decide(question: str, **settings: object) -> tuple[str, str]:
    decision = RoutingPolicy(RoutingSettings(large_url=URL, **settings)).decide(question)  # type: ignore[arg-type]
    return decision.tier, decision.reason


@pytest.mark.parametrize("question", [
    "Hello!", "What's your name?", "Good morning, how are you today?", "你好", "谢谢你",
    "Tell me a joke.", "Where is the station?",
])
def test_small_talk_stays_on_the_small_model(question: str) -> None:
    assert decide(question) == ("small", "no rule matched")


@pytest.mark.parametrize(("question", "reason"), [
    ("Can you explain how rainbows form?", "keyword 'explain'"),
    ("WHY is the sky blue?", "keyword 'why'"),
    ("Compare Python and Rust for a web server.", "keyword 'compare'"),
    ("请计算一下今天的花费", "keyword '计算'"),
    ("为什么天空是蓝色的", "keyword '为什么'"),
    ("What is 127 * 49?", r"pattern '\d\s*[-+*/^×÷=]\s*\d'"),
    ("Is `x = f(y);` right?", r"pattern '```|\bdef \w+\(|\w+\([^()]*\)\s*[;{]'"),
])
def test_hard_questions_go_to_the_large_model(question: str, reason: str) -> None:
    assert decide(question) == ("large", reason)


def test_keywords_match_whole_words_only() -> None:
    # "why" inside "whyte", "code" inside "codex": not hard questions
    assert decide("Is Whyte's shop open?")[0] == "small"
    assert decide("What does codex mean?")[0] == "small"


def test_long_questions_go_to_the_large_model_by_words_or_characters() -> None:
    assert decide("tell me " * 15) == ("large", "30 words")
    assert decide("今" * 40) == ("large", "40 CJK characters")
    assert decide("a" * 200)[0] == "small"  # one long word is not a long question
    assert decide("today " * 5, min_words=5) == ("large", "5 words")


def test_switches_and_custom_rules() -> None:
    assert decide("Hello!", mode="always") == ("large", "mode always")
    assert decide("Explain this", mode="never") == ("small", "mode never")
    assert decide("Explain this", keywords=()) == ("small", "no rule matched")
    assert decide("refund my order", keywords=("refund",)) == ("large", "keyword 'refund'")
    assert decide("order #123", patterns=(r"#\d+",)) == ("large", r"pattern '#\d+'")


def test_without_a_large_model_everything_stays_small() -> None:
    policy = RoutingPolicy(RoutingSettings(mode="always"))
    assert policy.decide("Explain everything").tier == "small"
    with pytest.raises(ConfigError, match="--llm-large-url"):
        RoutingSettings().large_llm_settings(LLMSettings())


def test_settings_are_checked_and_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="routing"):
        load_settings(routing={"patterns": ("(",)})
    with pytest.raises(ConfigError, match="http"):
        load_settings(routing={"large_url": "gpu-box:8000"})
    monkeypatch.setenv("TALKFACE_ROUTING__LARGE_URL", URL)
    monkeypatch.setenv("TALKFACE_ROUTING__LARGE_MODEL", "qwen2.5-7b")
    settings = load_settings()
    large = settings.routing.large_llm_settings(settings.llm)
    assert (large.backend, large.url, large.model) == ("openai", URL, "qwen2.5-7b")
    assert large.persona == settings.llm.persona


class _Scripted(LLMBackend):
    """Writes ``words`` and then fails with ``error`` (None: ends normally)."""

    name = "scripted"
    capabilities = LLMCapabilities(batching=True, prefix_reuse=False)

    def __init__(self, words: tuple[str, ...], error: BackendError | None) -> None:
        super().__init__(LLMSettings())
        self.words = words
        self.error = error
        self.calls = 0

    @classmethod
    def load(cls, settings: LLMSettings) -> Self:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        self.calls += len(requests)
        for request in requests:
            for word in self.words:
                request.stream.put(word)
            if self.error is not None:
                raise self.error
            request.stream.close()
        return [GenerationStats(completion_tokens=len(self.words)) for _ in requests]


DOWN = BackendError("the LLM server at http://127.0.0.1:9/v1 is not reachable", retryable=True)


async def answer(large: _Scripted, small: _Scripted) -> tuple[RoutedLLM, str, RouteCounts]:
    counts = RouteCounts()
    small_engine: Engine[GenerationRequest, GenerationStats] = Engine(
        "llm", small.generate_batch)

    async def get_small() -> Engine[GenerationRequest, GenerationStats]:
        return small_engine

    routed = RoutedLLM("large", engine=Engine("llm-large", large.generate_batch),
                       small=get_small, counts=counts)
    stream = TokenStream()
    text = ""
    try:
        await routed.submit(GenerationRequest(
            messages=(ChatMessage(role="user", content="Explain tides"),), stream=stream))
        async for delta in stream:
            text += delta
    finally:
        await small_engine.aclose()
    return routed, text, counts


async def test_the_large_model_answers_when_it_is_up() -> None:
    routed, text, counts = await answer(_Scripted(("big ", "answer"), None),
                                        _Scripted(("small",), None))
    assert (routed.route, routed.fallback, text) == ("large", False, "big answer")
    assert routed.headers() == {"x-talkface-route": "large"}
    assert counts.snapshot() == {"faq": 0, "small": 0, "large": 1, "large_fallback": 0}


async def test_an_unreachable_large_model_falls_back_to_the_small_one(
        caplog: pytest.LogCaptureFixture) -> None:
    small = _Scripted(("small ", "answer"), None)
    routed, text, counts = await answer(_Scripted((), DOWN), small)
    assert (routed.route, routed.fallback, text) == ("small", True, "small answer")
    assert small.calls == 1
    assert routed.headers() == {"x-talkface-route": "small",
                                "x-talkface-route-fallback": "large"}
    assert counts.snapshot() == {"faq": 0, "small": 0, "large": 0, "large_fallback": 1}
    [line] = [r.getMessage() for r in caplog.records if r.name == "talkface.llm.routing"]
    assert "not reachable" in line and "tides" not in line.lower()


async def test_a_failure_after_the_first_token_is_not_hidden() -> None:
    # Half an answer was already said: answering again from the small model would repeat it.
    small = _Scripted(("small",), None)
    with pytest.raises(BackendError, match="not reachable"):
        await answer(_Scripted(("big ",), DOWN), small)
    assert small.calls == 0


async def test_a_permanent_error_of_the_large_model_is_reported_not_hidden() -> None:
    wrong_model = BackendError("the LLM server answered HTTP 404: no such model", retryable=False)
    small = _Scripted(("small",), None)
    with pytest.raises(BackendError, match="404"):
        await answer(_Scripted((), wrong_model), small)
    assert small.calls == 0


def test_the_documented_rules_and_example_are_the_real_ones(tmp_path: Path) -> None:
    """docs/api.md's Routing section: its default keywords, and its TOML example as written."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text("utf-8")
    section = docs[docs.index("## Routing"):]
    row = next(line for line in section.splitlines() if line.startswith("| a keyword"))
    assert tuple(re.findall(r"`([^`]+)`", row.split("|")[2])) == DEFAULT_KEYWORDS
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    config = tmp_path / "talkface.toml"
    config.write_text(example.group(1), encoding="utf-8")
    policy = RoutingPolicy(load_settings(config).routing)
    assert policy.decide("Where is my refund?").reason == "keyword 'refund'"
    assert policy.decide("Status of order #991?").tier == "large"
    assert policy.decide("Hello!").tier == "small"


def test_the_examples_in_the_docstrings_run() -> None:
    from talkface.llm import routing

    assert doctest.testmod(routing).failed == 0
